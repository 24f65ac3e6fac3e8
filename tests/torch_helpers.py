"""Checks shared by the dense and the convolutional torch tests."""

import torch
from torch import nn

from pyfa.crosscheck import _rel_dist


def assert_compiled_equals_eager_and_differs_from_bp(build, x, y, layers_of, steps: int = 2) -> None:
    """`build()` makes the same network each call. One copy runs eagerly, one under
    ``torch.compile(fullgraph=True)`` (a graph break raises). For `steps` steps their weight
    gradients (and kp's feedback gradients) agree in float64, and brsf's streams advance alike.
    Then the compiled first layer's weight gradient differs from backprop's: the same network with
    every layer in mode bp. `layers_of(model)` lists a model's FA layers."""
    eager, compiled_model = build(), build()
    compiled = torch.compile(compiled_model, fullgraph=True)
    for step in range(steps):
        for m in (eager, compiled):
            m.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
        for a, b in zip(layers_of(eager), layers_of(compiled_model), strict=True):
            torch.testing.assert_close(b.weight.grad, a.weight.grad, rtol=1e-10, atol=1e-13)
            if a.mode == "kp":
                torch.testing.assert_close(b.feedback.grad, a.feedback.grad, rtol=1e-10, atol=1e-13)
            if a.mode == "brsf":
                assert torch.equal(a.brsf_state, b.brsf_state) and a.brsf_state[1] == step + 1
    bp = build()
    for m in layers_of(bp):
        m.mode = "bp"
    nn.functional.mse_loss(bp(x), y).backward()
    assert _rel_dist(layers_of(compiled_model)[0].weight.grad.numpy(),
                     layers_of(bp)[0].weight.grad.numpy()) > 0.05
