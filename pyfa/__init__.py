"""pyfa: Feedback Alignment in Julia/Flux and PyTorch, and a cross-check that both really use it.

``import pyfa`` is light: it imports neither torch nor juliacall and never starts Julia.
Sub-packages: ``pyfa.reference`` (numpy oracle), ``pyfa.torch`` (PyTorch port),
``pyfa.julia`` (juliacall bridge to the Julia package PyFA), ``pyfa.crosscheck``,
``pyfa.train``, ``pyfa.lint``.
"""

from pyfa.checkpoint import load, save
from pyfa.network import ACTIVATIONS, MODES, DenseParams, Gradients, init_mlp

__version__ = "0.1.0"
__all__ = ["ACTIVATIONS", "MODES", "DenseParams", "Gradients", "init_mlp", "save", "load", "__version__"]

