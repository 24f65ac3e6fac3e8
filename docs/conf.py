"""Sphinx configuration of pyfa's documentation (``make docs`` builds it into ``site/``).

Markdown pages through myst-parser, the furo theme, Pygments highlighting and MathML math at build
time (docs/_ext/mathml.py): the built site loads no script or stylesheet from the network and
works opened from disk. torch, juliacall and matplotlib are mocked for autodoc, so building the
docs needs neither (the ``docs`` extra of pyproject.toml is all it needs).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not

import pyfa  # noqa: E402

#: The project's repository. A placeholder until the project has a public home: the same URL is
#: in pyproject.toml ([project.urls]), README.md and julia/PyFA (how Julia users add PyFA).
REPOSITORY = "https://github.com/pyfa-dev/pyfa"

project = "pyfa"
author = "pyfa developers"
copyright = "pyfa developers"
release = pyfa.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
    "sphinxarg.ext",
    "mathml",
    "signature",
    "apimodule",
]

root_doc = "index"
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/README.md"]
# `name` in a docstring: a cross-reference when it resolves, code otherwise (never a warning)
default_role = "py:obj"
nitpicky = False

# -- MyST ----------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "deflist", "colon_fence", "attrs_inline"]
myst_dmath_double_inline = True
myst_heading_anchors = 3  # `page.md#a-heading` links, as GitHub and MkDocs slug them

# -- highlighting ---------------------------------------------------------------------------------
highlight_language = "text"  # an unlabelled block is shown as it is
pygments_style = "friendly"
pygments_dark_style = "monokai"

# -- math: MathML at build time (docs/_ext/mathml.py) ----------------------------------------------
html_math_renderer = "mathml"

# -- autodoc -------------------------------------------------------------------------------------
autodoc_mock_imports = ["torch", "juliacall", "juliapkg", "matplotlib"]
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# -- the command-line reference: "pyfa demo", not "demo"
sphinxarg_full_subcommand_name = True

# -- copy buttons: copy the command, not the prompt or the output ---------------------------------
copybutton_exclude = ".linenos, .gp, .go"
copybutton_prompt_text = r"\$ |pkg> |julia> |>>> "
copybutton_prompt_is_regexp = True

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pyfa {release}"
html_static_path = ["_static"]
html_css_files = ["pyfa.css"]
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "source_repository": REPOSITORY,
    "source_branch": "main",
    "source_directory": "docs/",
    "top_of_page_buttons": ["view"],
    "footer_icons": [
        {
            "name": "Repository",
            "url": REPOSITORY,
            "html": (DOCS / "_static" / "github.svg").read_text(encoding="utf-8"),
            "class": "",
        },
    ],
}
