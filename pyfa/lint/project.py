"""The files around a linted file: who includes it, the module it belongs to, its package.

A Julia module can be spread over files joined by ``include("x.jl")``; a package is a folder
with a ``Project.toml`` (``[deps]``, ``[weakdeps]``, ``[extensions]``), its module in
``src/<Name>.jl`` and its package extensions in ``ext/<Ext>.jl``. `Project` answers, for a linted
file, the questions the rules need (which imports are in force where it is included, which module
it is part of, what the module defines, which AD backends get which rules), reading as little as
it can:

- only regular files are ever opened: a FIFO, socket or device named ``*.jl`` is skipped when a
  folder is searched and refused when named (`read_regular`), so nothing can block;
- a neighbour file is parsed only when an ``include`` chain reaches it. To find the files that
  include ``rules.jl``, the candidates (the package tree, else the file's folder and the one
  above) are read once as bytes and only those that say ``include`` and name ``"…rules.jl"`` are
  parsed; then the parse decides;
- everything is computed once per `Project` and cached, and only when a rule asks.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyfa.lint.parsing import SourceFile
from pyfa.lint.scopes import AD_BACKENDS, FileModel, Import, Scope, scan

#: How many folders above a file are searched for its package's Project.toml.
PACKAGE_SEARCH_DEPTH = 5
_JL_STRING = re.compile(rb'"([^"\n]*\.jl)"')


# --------------------------------------------------------------------------- reading files


def is_regular(path: Path) -> bool:
    """Whether `path` is (a link to) a regular file; never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file. Anything else (a FIFO, a device, a folder) raises OSError
    without being opened for reading, so a FIFO without a writer cannot block the linter."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    # O_NONBLOCK: should the file be swapped for a FIFO after the stat, open() still returns
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


def julia_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Regular ``*.jl`` files under `folder`, sorted (symlinked folders are not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if name.endswith(".jl") and is_regular(p):
                out.append(p)
        if not recursive:
            break
    return sorted(out)


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class Package:
    """What a package's Project.toml says that the rules use."""

    root: Path
    name: str | None
    deps: frozenset = frozenset()
    weakdeps: frozenset = frozenset()
    extensions: tuple = ()   # ((extension name, (trigger packages...)), ...)

    @property
    def entry(self) -> Path | None:
        """src/<Name>.jl, the package module's file."""
        return self.root / "src" / f"{self.name}.jl" if self.name else None

    def extension_entries(self) -> Iterator[tuple[str, Path]]:
        """Each [extensions] entry's file: ext/<Ext>.jl or ext/<Ext>/<Ext>.jl (as Julia looks)."""
        for ext, _triggers in self.extensions:
            for p in (self.root / "ext" / f"{ext}.jl", self.root / "ext" / ext / f"{ext}.jl"):
                if is_regular(p):
                    yield ext, p
                    break

    def unlisted_extension_entries(self) -> Iterator[tuple[str, Path]]:
        """Files that look like extensions (ext/<X>.jl, ext/<X>/<X>.jl) but that [extensions]
        does not list: Julia never loads them."""
        listed = {ext for ext, _ in self.extensions}
        for p in julia_files(self.root / "ext", recursive=False):
            if p.stem not in listed:
                yield p.stem, p
        folder = self.root / "ext"
        for d in sorted(folder.iterdir()) if folder.is_dir() else []:
            if d.is_dir() and d.name not in listed and is_regular(d / f"{d.name}.jl"):
                yield d.name, d / f"{d.name}.jl"

    def owns(self, path: Path) -> bool:
        """Whether `path` is package code (under src/ or ext/), not a test or a script."""
        try:
            rel = path.resolve().relative_to(self.root)
        except ValueError:
            return False
        return bool(rel.parts) and rel.parts[0] in ("src", "ext")


def read_package(root: Path) -> Package | None:
    """The Package described by root/Project.toml; None when it is missing or not valid TOML."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            return None
    try:
        data = tomllib.loads(read_regular(root / "Project.toml").decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None

    def names(key: str) -> frozenset:
        value = data.get(key)
        return frozenset(value) if isinstance(value, dict) else frozenset()

    exts = data.get("extensions") if isinstance(data.get("extensions"), dict) else {}
    extensions = tuple((str(k), tuple(v) if isinstance(v, list) else (str(v),))
                       for k, v in exts.items())
    name = data.get("name") if isinstance(data.get("name"), str) else None
    return Package(root, name, names("deps"), names("weakdeps"), extensions)


# --------------------------------------------------------------------------- modules


@dataclass
class ModuleFacts:
    """A module's facts over all the files it `include`s (each tagged with its file)."""

    defined: set = field(default_factory=set)
    exports: list = field(default_factory=list)     # [(name, node, SourceFile)]
    structs: dict = field(default_factory=dict)     # name -> (fields, node, SourceFile)
    layers: list = field(default_factory=list)      # [(Layer, SourceFile)]
    trainable_methods: set = field(default_factory=set)
    opaque: bool = False


@dataclass
class Host:
    """An `include` of a file: the including file, the module scope of the call, the call."""

    file: SourceFile
    scope: Scope
    call: object

    @property
    def at_top(self) -> bool:
        """Whether the include sits at the host file's top level (not in a module)."""
        return self.scope.node.type != "module_definition"


class Project:
    """The files being linted plus the files they include or are included by (each parsed
    at most once)."""

    def __init__(self):
        self.files: dict = {}      # key (resolved Path, or the given path for unsaved text) -> SourceFile
        self._models: dict = {}    # id(SourceFile) -> FileModel
        self._index: dict = {}     # search root -> {file name: [files that may include it]}
        self._hosts: dict = {}     # resolved Path -> [Host]
        self._packages: dict = {}  # folder -> Package | None
        self._facts: dict = {}     # (id(SourceFile), scope node id) -> ModuleFacts
        self._coverage: dict = {}  # package root -> {backend: set of function names}

    # -- files

    def load(self, path: Path, text: str | bytes | None = None) -> SourceFile:
        """The parsed file at `path` (read from disk unless `text` is given). Raises OSError
        for a missing, unreadable or non-regular file."""
        key = path.resolve() if text is None or path.exists() else path
        if key not in self.files:
            if text is None:
                data = read_regular(path)
            else:
                data = text.encode() if isinstance(text, str) else text
            self.files[key] = SourceFile(str(path), data)
        return self.files[key]

    def model(self, file: SourceFile) -> FileModel:
        m = self._models.get(id(file))
        if m is None:
            m = self._models[id(file)] = scan(file)
        return m

    # -- packages

    def package_root(self, path: Path) -> Path | None:
        """The nearest folder above `path` (up to PACKAGE_SEARCH_DEPTH) with a Project.toml."""
        for d in list(path.resolve().parents)[:PACKAGE_SEARCH_DEPTH]:
            if is_regular(d / "Project.toml"):
                return d
        return None

    def package(self, path: Path) -> Package | None:
        root = self.package_root(path)
        if root is None:
            return None
        if root not in self._packages:
            self._packages[root] = read_package(root)
        return self._packages[root]

    # -- includes

    def _candidates(self, path: Path) -> tuple[Path, list[Path]]:
        root = self.package_root(path)
        if root is not None:
            return root, julia_files(root)
        folders = [path.parent, path.parent.parent]
        return path.parent, sorted({p for d in folders for p in julia_files(d, recursive=False)})

    def _include_index(self, path: Path) -> dict:
        """{file name: [files whose text says `include` and names "…/<file name>"]}, for the
        folder tree `path` is searched in. Each candidate is read once, and not parsed."""
        key, candidates = self._candidates(path)
        index = self._index.get(key)
        if index is None:
            index = {}
            for cand in candidates:
                try:
                    data = read_regular(cand)
                except OSError:
                    continue
                if b"include" not in data:
                    continue
                named_files = {m.group(1).replace(b"\\", b"/").rsplit(b"/", 1)[-1]
                               for m in _JL_STRING.finditer(data)}
                for name in named_files:
                    index.setdefault(name.decode("utf-8", errors="replace"), []).append(cand)
            self._index[key] = index
        return index

    def hosts(self, path: Path) -> list[Host]:
        """The `include` calls that evaluate `path`, in the package (or folder) around it."""
        path = path.resolve()
        if path not in self._hosts:
            out = []
            for cand in self._include_index(path).get(path.name, []):
                if cand.resolve() == path:
                    continue
                try:
                    host = self.load(cand)
                except OSError:
                    continue
                for scope in self.model(host).scopes:
                    out += [Host(host, scope, inc.call) for inc in scope.includes
                            if inc.target == path]
            self._hosts[path] = out
        return self._hosts[path]

    def inherited_imports(self, path: Path, seen: frozenset = frozenset()) -> list[Import]:
        """Imports in force where `path` is included (its hosts', transitively)."""
        path = path.resolve()
        out = []
        for h in self.hosts(path):
            out += [i for i in h.scope.imports if i.offset < h.call.start_byte]
            hpath = Path(h.file.path).resolve()
            if h.at_top and hpath not in seen:
                out += self.inherited_imports(hpath, seen | {path})
        return out

    def owner_scopes(self, path: Path, seen: frozenset = frozenset()) -> list:
        """(file, scope) of each module `path`'s top level is evaluated in."""
        path = path.resolve()
        out = []
        for h in self.hosts(path):
            hpath = Path(h.file.path).resolve()
            if not h.at_top:
                out.append((h.file, h.scope))
            elif hpath not in seen and self.hosts(hpath):
                out += self.owner_scopes(hpath, seen | {path})
            else:
                out.append((h.file, h.scope))
        return out

    def host_modules(self, path: Path, seen: frozenset = frozenset()) -> list[str]:
        """Names of the modules `path` is included into (transitively)."""
        path = path.resolve()
        out = []
        for h in self.hosts(path):
            if not h.at_top:
                if h.scope.name:
                    out.append(h.scope.name)
            else:
                hpath = Path(h.file.path).resolve()
                if hpath not in seen:
                    out += self.host_modules(hpath, seen | {path})
        return out

    def module_facts(self, file: SourceFile, scope: Scope) -> ModuleFacts:
        """The facts of the module `scope` of `file`, over every file it includes at top level
        (an include of a computed path, or of a file that cannot be read, makes it opaque)."""
        key = (id(file), scope.node.id)
        if key in self._facts:
            return self._facts[key]
        facts = ModuleFacts()
        seen: set = set()
        todo = [(file, scope)]
        while todo:
            f, s = todo.pop()
            if (id(f), s.node.id) in seen:
                continue
            seen.add((id(f), s.node.id))
            facts.defined |= s.defined
            facts.exports += [(name, node, f) for name, node in s.exports]
            for name, (fields, node) in s.structs.items():
                facts.structs[name] = (fields, node, f)
            facts.layers += [(layer, f) for layer in s.layers]
            facts.trainable_methods |= s.trainable_methods
            facts.opaque |= s.opaque
            for inc in reversed(s.includes):
                if not inc.toplevel or inc.target is None:
                    continue
                try:
                    child = self.load(inc.target)
                except OSError:
                    facts.opaque = True
                    continue
                todo.append((child, self.model(child).top))
        self._facts[key] = facts
        return facts

    # -- AD backends

    def ad_coverage(self, package: Package) -> dict[str, set[str]]:
        """{backend: names of the functions whose rules the package gives it}, from the package
        module's files and its [extensions]' files (following their includes)."""
        if package.root not in self._coverage:
            entries = [package.entry, *(p for _, p in package.extension_entries())]
            self._coverage[package.root] = self._ad_rules_from(p for p in entries if p)
        return self._coverage[package.root]

    def unlisted_ad_coverage(self, package: Package) -> dict[str, dict[str, set[str]]]:
        """{extension: {backend: function names}} for the ext/ files [extensions] does not list."""
        return {ext: self._ad_rules_from([p]) for ext, p in package.unlisted_extension_entries()}

    def _ad_rules_from(self, entries) -> dict[str, set[str]]:
        coverage: dict[str, set[str]] = {b: set() for b in AD_BACKENDS}
        todo, seen = list(entries), set()
        while todo:
            p = todo.pop().resolve()
            if p in seen:
                continue
            seen.add(p)
            try:
                model = self.model(self.load(p))
            except OSError:
                continue
            for s in model.scopes:
                for backend, names in s.ad_rules.items():
                    coverage[backend] |= names
                todo += [inc.target for inc in s.includes if inc.target is not None]
        return coverage
