"""``{signature} pyfa.torch.fa_linear``: the real signature of a function or class, in a guide page.

The guides show a call's signature before explaining it. Written by hand, such a line drifts from
the code; this directive reads it from the object itself (as autodoc does: source defaults kept,
annotations shown) and links to the object's entry in the API reference. A name that cannot be
imported is a build error.
"""

from __future__ import annotations

import importlib
import inspect

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.domains.python import PyClasslike, PyFunction
from sphinx.ext.autodoc.mock import mock
from sphinx.ext.autodoc.preserve_defaults import update_defvalue
from sphinx.util.docutils import SphinxDirective
from sphinx.util.inspect import signature, stringify_signature


def resolve(name: str):
    """The object a dotted name refers to: the longest importable module, then attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot import any prefix of {name!r}")


class Signature(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            with mock(self.config.autodoc_mock_imports):  # as autodoc imports: no torch needed
                obj = resolve(name)
        except (ImportError, AttributeError) as e:
            raise self.error(f"signature: {name}: {e}") from None
        is_class = inspect.isclass(obj)
        target = obj.__init__ if is_class else obj
        bound = is_class or inspect.ismethod(obj)
        update_defvalue(self.env.app, target, bound)
        sig = signature(target, bound_method=is_class)
        text = stringify_signature(sig, show_return_annotation=not is_class)
        directive = PyClasslike if is_class else PyFunction
        desc = directive(
            "py:class" if is_class else "py:function", [name + text], {"no-index": True},
            StringList(), self.lineno, self.content_offset, self.block_text, self.state,
            self.state_machine,
        ).run()
        ref = addnodes.pending_xref(
            "", nodes.literal(name, name), refdomain="py", reftype="obj", reftarget=name,
            refexplicit=True, refwarn=True,
        )
        note = nodes.paragraph("", "", nodes.Text("Reference: "), ref, classes=["signature-ref"])
        return [*desc, note]


def setup(app: Sphinx) -> dict:
    app.add_directive("signature", Signature)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
