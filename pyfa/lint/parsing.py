"""Parsing Julia with tree-sitter-julia: the parser, a parsed file, and tree walking.

Nothing here knows any lint rule. tree-sitter is imported on first parse, so ``import pyfa.lint``
stays light.

One detour, measured on tree-sitter-julia 0.23.1: an adjoint quote followed by an operator
(``W' * x``, ``x' == y``) leaves a second parse stack alive until the end of the file, so each such
quote costs time proportional to the rest of the file and a file full of them parses in quadratic
time (2,000 ``y = W' * d`` lines ahead of 20,000 plain lines: 3 s; behind them: 0.2 s; a generated
100,000-line file of rules: 51 s). `parse` therefore first parses a copy in which each such quote
is a space (same length: every byte offset, line and column is unchanged), and keeps that tree
when it has no syntax error; otherwise it parses the original text. The copy only loses the
``adjoint_expression`` around those operands; quote code with `SourceFile.text`, which reads the
original bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

COMMENTS = ("comment", "line_comment", "block_comment")


@lru_cache(maxsize=1)
def parser():
    """The tree-sitter parser for Julia (built once)."""
    import tree_sitter_julia
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_julia.language()))


# --------------------------------------------------------------------------- the adjoint detour

# What may precede an adjoint quote (Julia's own rule): an identifier character (bytes >= 0x80
# are the tail of a Unicode identifier character), a closing bracket, or another adjoint quote.
_ADJOINT_AFTER = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_)]}'"
                           + bytes(range(0x80, 0x100)))
# What may follow an adjoint quote that is read as a space: whitespace, or a binary operator
# that has no unary form (so that `[x'*y]` and `[x *y]` mean the same), optionally dotted.
_SPACE_BEFORE = frozenset(b" \t\r\n*/\\^=<>|&%")
_DOTTED = frozenset(b"*/\\^=<>|&%")
_CODE = re.compile(rb'#=|#|"""|"|```|`|\'')
_CODE_IN_INTERPOLATION = re.compile(rb'#=|#|"""|"|```|`|\'|\(|\)')
_BLOCK_COMMENT = re.compile(rb"#=|=#")
_STRING_END = {delim: (re.compile(rb"\\.|" + re.escape(delim), re.S),
                       re.compile(rb"\\.|\$\(|" + re.escape(delim), re.S))
               for delim in (b'"', b'"""', b"`", b"```")}
_IDENTIFIER_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _adjoints_before_operators(src: bytes) -> list[int]:
    """Byte offsets of the adjoint quotes in `src` that are followed by whitespace or a binary
    operator, skipping comments, strings, commands and character literals (linear time)."""
    out: list[int] = []
    n = len(src)
    # frames: ("code", open parens) for the file or a `$( )` interpolation; ("str", delim, interp)
    frames: list[list] = [["code", 0]]
    i = 0
    while i < n:
        frame = frames[-1]
        if frame[0] == "str":
            delim, interpolating = frame[1], frame[2]
            m = _STRING_END[delim][interpolating].search(src, i)
            if m is None:
                break
            tok, i = m.group(), m.end()
            if tok == delim:
                frames.pop()
            elif tok == b"$(":
                frames.append(["code", 0])
            continue
        m = (_CODE_IN_INTERPOLATION if len(frames) > 1 else _CODE).search(src, i)
        if m is None:
            break
        tok, start, i = m.group(), m.start(), m.end()
        if tok == b"#=":
            depth = 1
            while depth and (c := _BLOCK_COMMENT.search(src, i)) is not None:
                depth += 1 if c.group() == b"#=" else -1
                i = c.end()
            if depth:
                break
        elif tok == b"#":
            nl = src.find(b"\n", i)
            i = n if nl < 0 else nl + 1
        elif tok in (b'"', b'"""', b"`", b"```"):
            # `raw"..."`, `r"..."`: a string macro's text is not interpolated
            prefixed = start > 0 and src[start - 1] in _IDENTIFIER_BYTES
            frames.append(["str", tok, not prefixed])
        elif tok == b"(":
            frame[1] += 1
        elif tok == b")":
            if frame[1] == 0:
                frames.pop()  # end of a `$( )` interpolation
            else:
                frame[1] -= 1
        elif start > 0 and src[start - 1] in _ADJOINT_AFTER:  # an adjoint quote
            nxt = src[i] if i < n else 0x20
            if nxt in _SPACE_BEFORE or (nxt == 0x2E and i + 1 < n and src[i + 1] in _DOTTED):
                out.append(start)
        else:  # a character literal: 'a', '\n', '\u00e9', 'é'
            close = src.find(b"'", i + (2 if src[i:i + 1] == b"\\" else 1), i + 12)
            if close >= 0:
                i = close + 1
    return out


def parse(source: bytes):
    """Parse Julia source into a tree-sitter Tree (see the module docstring for the detour
    around adjoint quotes)."""
    quotes = _adjoints_before_operators(source)
    if quotes:
        spaced = bytearray(source)
        for q in quotes:
            spaced[q] = 0x20
        tree = parser().parse(bytes(spaced))
        if not tree.root_node.has_error:
            return tree
    return parser().parse(source)


# --------------------------------------------------------------------------- trees


class SourceFile:
    """One parsed Julia file: its display path, bytes and tree."""

    def __init__(self, path: str, source: bytes):
        self.path = path
        self.source = source
        self.tree = parse(source)
        self._line_starts: list[int] | None = None

    def __repr__(self) -> str:
        return f"SourceFile({self.path!r}, {len(self.source)} bytes)"

    @property
    def root(self):
        return self.tree.root_node

    def text(self, node) -> str:
        """The original source text of `node` (for quoting code in messages)."""
        return self.source[node.start_byte:node.end_byte].decode("utf-8", errors="replace")

    def position(self, node) -> tuple[int, int]:
        """1-based line and column (in characters, not bytes) of `node`'s start."""
        row, col = node.start_point
        if self._line_starts is None:
            starts, at = [0], self.source.find(b"\n")
            while at >= 0:
                starts.append(at + 1)
                at = self.source.find(b"\n", at + 1)
            self._line_starts = starts
        start = self._line_starts[row] if row < len(self._line_starts) else len(self.source)
        return row + 1, len(self.source[start:start + col].decode("utf-8", errors="replace")) + 1


def text(node) -> str:
    """The text of `node` as parsed. Names read the same as in the source; to quote code in a
    message use `SourceFile.text` (an adjoint quote before an operator may read as a space here)."""
    return node.text.decode("utf-8", errors="replace")


def named(node) -> list:
    """Named children of `node`, comments excluded."""
    return [c for c in node.named_children if c.type not in COMMENTS]


def walk(node, stop: Sequence[str] = ()) -> Iterator:
    """Pre-order walk; nodes whose type is in `stop` are yielded but not entered. (A cursor
    walk: `node.children` lists end up in reference cycles that only a full collection frees.)"""
    cursor = node.walk()
    depth = 0
    while True:
        n = cursor.node
        yield n
        if (depth == 0 or n.type not in stop) and cursor.goto_first_child():
            depth += 1
            continue
        while depth and not cursor.goto_next_sibling():
            cursor.goto_parent()
            depth -= 1
        if depth == 0:
            return


def inside(node, kinds: Sequence[str]) -> bool:
    """Whether an ancestor of `node` has one of the types `kinds` (walks up: O(depth))."""
    p = node.parent
    while p is not None:
        if p.type in kinds:
            return True
        p = p.parent
    return False
