"""Typeset the pages' LaTeX as MathML when the site is built: no script, no network when it is read.

Registers the HTML math renderer ``mathml`` (select it with ``html_math_renderer = "mathml"``). Every
inline (``$...$``) and display (``$$...$$``) formula is converted with latex2mathml; browsers draw
MathML Core natively. A formula latex2mathml cannot convert, or converts with a command left over
as text (a misspelt macro), is a build warning at the formula's page and line: with ``-W`` the
build fails instead of showing raw LaTeX.

latex2mathml (3.81) treats ``aligned`` as plain text and numbers every ``align`` line (1), (2), ...
per formula, so both are rewritten to ``align*``; a display formula with ``\\\\`` or ``&`` and no
environment of its own is set as ``align*`` too, which is what amsmath users expect of ``$$ a &= b
\\\\ c &= d $$``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"
_REWRITES = [
    (re.compile(r"\\(begin|end)\{(aligned|align)\}"), r"\\\1{align*}"),
    (re.compile(r"\\(begin|end)\{gathered\}"), r"\\\1{gather*}"),
]


def to_mathml(latex: str, *, display: bool) -> str:
    """The MathML of one formula; ValueError when latex2mathml cannot convert it faithfully."""
    tex = latex.strip()
    for pattern, repl in _REWRITES:
        tex = pattern.sub(repl, tex)
    if display and not tex.startswith("\\begin") and ("\\\\" in tex or "&" in tex):
        tex = "\\begin{align*}" + tex + "\\end{align*}"
    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as e:  # latex2mathml raises its own exception types and plain ones
        raise ValueError(f"latex2mathml cannot convert it ({type(e).__name__}: {e})") from None
    tree = ET.fromstring(mathml)
    leftover = [el.text for el in tree.iter()
                if el.tag != f"{MATHML_NS}mtext" and el.text and "\\" in el.text]
    if leftover:
        raise ValueError(f"unknown command(s) left as text: {', '.join(leftover)}")
    if any(len(el) == 0 and not (el.text or "").strip() for el in tree.iter(f"{MATHML_NS}mstyle")):
        raise ValueError("a style command (\\textstyle, \\displaystyle, ...) that styles nothing: "
                         "latex2mathml needs its argument in braces, {\\textstyle ...}")
    return mathml


def _render(self, node: nodes.Element, *, display: bool) -> None:
    latex = node.astext()
    try:
        mathml = to_mathml(latex, display=display)
    except ValueError as e:
        logger.warning("formula %r: %s", latex, e, location=node, type="mathml")
        mathml = f"<code>{self.encode(latex)}</code>"
    # alttext: what the formula says in LaTeX, for copy-paste and screen readers that lack MathML
    mathml = mathml.replace("<math ", f'<math alttext="{self.attval(latex.strip())}" ', 1)
    if display:
        self.body.append(self.starttag(node, "div", CLASS="math math-display"))
        self.body.append(mathml)
        self.body.append("</div>\n")
    else:
        self.body.append(self.starttag(node, "span", "", CLASS="math"))
        self.body.append(mathml)
        self.body.append("</span>")
    raise nodes.SkipNode


def visit_math(self, node: nodes.math) -> None:
    _render(self, node, display=False)


def visit_math_block(self, node: nodes.math_block) -> None:
    _render(self, node, display=True)


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_math_block, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
