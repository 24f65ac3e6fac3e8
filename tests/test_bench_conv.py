"""The CUDA-only ResNet-20 step of benchmarks/bench_conv.py, run small on the CPU so that the code a
GPU machine runs is known to work: the converted model is FA (every conv a Conv2dFA, its input
gradients not backprop's) and both steps train under autocast."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pyfa.torch import Conv2dFA, LinearFA

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture
def bench_conv(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # for its `_timing`
    spec = importlib.util.spec_from_file_location("bench_conv_under_test", BENCHMARKS / "bench_conv.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_resnet20_has_the_papers_layer_count_and_shapes(bench_conv):
    model = bench_conv.resnet20()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # 1 stem + 9 blocks x 2 + 2 downsampling shortcuts; with the dense layer, 20 weighted layers
    # on the main path (the shortcuts' 1x1 convs are extra)
    assert len(convs) == 1 + 18 + 2
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_converted_resnet_is_fa_with_the_same_weights(bench_conv):
    bp, fa = bench_conv.resnet_pair("cpu")
    assert not any(isinstance(m, (Conv2dFA, LinearFA)) for m in bp.modules())
    assert sum(isinstance(m, Conv2dFA) for m in fa.modules()) == 21
    assert sum(isinstance(m, LinearFA) for m in fa.modules()) == 1
    # same forward weights, so the same outputs; the input gradient is FA's, not backprop's
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    outs, grads = [], []
    for model in (bp, fa):
        model.double().eval()
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out.sum().backward()
        outs.append(out.detach())
        grads.append(xi.grad)
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-8)


def test_resnet_steps_train_both_models_under_cpu_autocast(bench_conv):
    bp, fa = bench_conv.resnet_pair("cpu")
    steps = bench_conv.resnet_steps("cpu", batch=4, dtype=torch.bfloat16, models=(bp, fa))
    before = {name: [p.detach().clone() for p in m.parameters()]
              for name, m in (("nn.Conv2d", bp), ("Conv2dFA", fa))}
    for step in steps.values():
        step()
    for name, m in (("nn.Conv2d", bp), ("Conv2dFA", fa)):
        changed = [not torch.equal(a, p) for a, p in zip(before[name], m.parameters(), strict=True)]
        assert all(changed), f"{name}: {changed.count(False)} parameters did not move"
        assert all(p.dtype == torch.float32 for p in m.parameters())
