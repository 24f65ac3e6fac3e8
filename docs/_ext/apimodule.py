"""``.. pyfa-module:: pyfa.torch``: ``automodule`` that documents every public name, constants included.

autodoc's ``automodule`` leaves out a module-level constant that has no ``#:`` doc comment in that
module's own source, and every constant the module imports and re-exports (``pyfa.torch.MODES``,
``pyfa.train.DEFAULT_LR``, ...), even with ``:undoc-members:``. This directive runs ``automodule``
and then ``autodata`` for each public constant it would leave out, so the page lists every name of
``__all__`` (or, without ``__all__``, every public name the module defines). tests/test_docs.py
checks that it does.
"""

from __future__ import annotations

import importlib
import inspect
import types

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.ext.autodoc.mock import mock
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or the public names the module defines (not what it imports)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name in dir(module):
        obj = getattr(module, name)
        if name.startswith("_") or isinstance(obj, types.ModuleType) or type(obj).__name__ == "_Feature":
            continue
        if (callable(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) != module.__name__:
            continue
        names.append(name)
    return names


def _constants_automodule_skips(modname: str, exclude: set[str]) -> list[str]:
    module = importlib.import_module(modname)
    try:
        documented = {name for (scope, name) in ModuleAnalyzer.for_module(modname).find_attr_docs()
                      if scope == ""}
    except Exception:  # no source to analyse: automodule documents no constant then
        documented = set()
    out = []
    for name in public_names(module):
        obj = getattr(module, name)
        if name in exclude or inspect.isclass(obj) or inspect.isroutine(obj) or callable(obj):
            continue
        if name.startswith("__") or name not in documented:
            out.append(name)
    return out


class PyfaModule(SphinxDirective):
    required_arguments = 1
    option_spec = {"exclude-members": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        modname = self.arguments[0]
        exclude_text = self.options.get("exclude-members", "")
        exclude = {n.strip() for n in exclude_text.split(",") if n.strip()}
        lines = [f".. automodule:: {modname}"]
        if exclude:
            lines.append(f"   :exclude-members: {', '.join(sorted(exclude))}")
        with mock(self.config.autodoc_mock_imports):
            constants = _constants_automodule_skips(modname, exclude)
        for name in constants:
            lines += ["", f".. autodata:: {modname}.{name}"]
        node = nodes.section()  # a container the parsed nodes are taken out of
        node.document = self.state.document
        self.state.nested_parse(StringList(lines, source=f"<pyfa-module {modname}>"),
                                self.content_offset, node, match_titles=True)
        return node.children


def drop_type_docstrings(app, what, name, obj, options, lines) -> None:
    """A constant without a doc comment gets its type's docstring from autodoc (`dict`'s, say): drop
    it, it describes the type, not the constant."""
    if what in ("data", "attribute") and lines:
        type_doc = inspect.getdoc(type(obj)) or ""
        if type_doc and type_doc.splitlines()[0].strip() == lines[0].strip():
            lines.clear()


def _napoleon_except_constants(app: Sphinx) -> None:
    """Napoleon reads the first line of a constant's docstring as Google style's ``type: text``, so
    ``#: The verdict's threshold: the relative distance ...`` would show the type "The verdict's
    threshold" (and likewise for properties). pyfa writes them as prose: napoleon keeps to functions,
    classes and modules."""
    from sphinx.ext.napoleon import _process_docstring

    for listener in list(app.events.listeners.get("autodoc-process-docstring", [])):
        if listener.handler is _process_docstring:
            app.disconnect(listener.id)

            def process(app, what, name, obj, options, lines):
                if what not in ("data", "attribute", "property"):
                    _process_docstring(app, what, name, obj, options, lines)

            app.connect("autodoc-process-docstring", process, priority=listener.priority)


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.napoleon")
    _napoleon_except_constants(app)
    app.add_directive("pyfa-module", PyfaModule)
    app.connect("autodoc-process-docstring", drop_type_docstrings)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
