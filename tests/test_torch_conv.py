"""Conv2dFA / conv2d_fa against the numpy oracle (every mode, float32 and float64, stride, padding,
dilation, groups, depthwise, unbatched, 'same'/'valid', every padding mode), against nn.Conv2d in
mode bp, against torch's own transposed convolution with B, on bad input, through `convert`, and
on the execution paths (autocast, torch.func, torch.compile, DDP).

Every gradient is held against an independent computation: the numpy oracle (`pyfa.reference`),
``torch.nn.grad.conv2d_input`` with B, nn.Conv2d + autograd (mode bp), finite differences
(gradcheck, mode bp), a loop of single-sample gradients, the eager model, a single-process run.
"""

import copy
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_helpers import assert_compiled_equals_eager_and_differs_from_bp

from pyfa import reference as R
from pyfa.crosscheck import _rel_dist
from pyfa.network import DenseParams
from pyfa.reference import ConvParams, Pool2d
from pyfa.torch import MODES, Conv2dFA, LinearFA, conv2d_fa, convert
from pyfa.torch.network import ACTIVATION_MODULES

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-12)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

#: (stride, padding, dilation, groups, out_channels) for x (2, 6, 7, 8) and a (3, 2) kernel: plain,
#: strided + padded, per-axis pairs with dilation, grouped + dilated, a stride that leaves columns no
#: window reaches, depthwise, and depthwise with channel multiplier 2, strided.
VARIANTS = [
    (1, 0, 1, 1, 6),
    (2, 1, 1, 1, 4),
    ((2, 1), (0, 2), (1, 2), 1, 6),
    (1, 1, 2, 2, 4),
    (3, (1, 0), 1, 3, 6),
    (1, 1, 1, 6, 6),
    (2, 1, 1, 6, 12),
]
VARIANT_IDS = ["plain", "strided", "pairs-dilated", "grouped", "gaps", "depthwise", "depthwise-x2"]
CIN, KERNEL, X_SHAPE = 6, (3, 2), (2, 6, 7, 8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions on one thread: on the 2 shared cores here, OpenMP's threads in a busy machine
    turn a depthwise float64 convolution of a few hundred values from 0.1 ms into 0.5 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _params(rng, stride, padding, dilation, groups, cout, dtype=np.float64, bias=True) -> ConvParams:
    shape = (cout, CIN // groups) + KERNEL
    return ConvParams(
        rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype),
        rng.normal(size=cout).astype(dtype) if bias else None, stride, padding, dilation, groups,
    )


def _layer(p: ConvParams, mode: str, *, seed: int = 0) -> Conv2dFA:
    """A Conv2dFA holding copies of p's arrays (built independently of `from_conv`)."""
    layer = Conv2dFA(p.in_channels, p.out_channels, p.kernel_size, p.stride, p.padding, p.dilation,
                     p.groups, bias=p.bias is not None, mode=mode, dtype=TORCH_DTYPE[p.weight.dtype.type],
                     generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(p.weight))
        layer.feedback.copy_(torch.from_numpy(p.feedback))
        if p.bias is not None:
            layer.bias.copy_(torch.from_numpy(p.bias))
    return layer


def _glorot_std(weight_shape) -> float:
    o, cg, kh, kw = weight_shape
    return float(np.sqrt(2.0 / (cg * kh * kw + o * kh * kw)))


def _replayed_brsf_matrix(weight: np.ndarray, state) -> np.ndarray:
    """brsf's B for the draw ``[seed, step]``, replayed from its definition: R from a generator
    seeded with SeedSequence([seed, step]), B = |R| · s · sign(W)."""
    seed = int(np.random.SeedSequence([int(state[0]), int(state[1])]).generate_state(1, np.uint64)[0])
    r = torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed),
                    dtype=TORCH_DTYPE[weight.dtype.type]).numpy()
    return np.abs(r) * _glorot_std(weight.shape) * np.sign(weight)


def _oracle_matrix(mode, p: ConvParams, brsf_state=None) -> np.ndarray:
    if mode == "brsf":
        return _replayed_brsf_matrix(p.weight, brsf_state)
    return R.feedback_matrix(mode, p.weight, p.feedback)


# ---------------------------------------------------------------- against the oracle


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_matches_the_oracle(mode, variant, dtype):
    rng = np.random.default_rng(0)
    p = _params(rng, *variant, dtype=dtype)
    x = rng.normal(size=X_SHAPE).astype(dtype)
    layer = _layer(p, mode)
    state = None if layer.brsf_state is None else layer.brsf_state.clone()
    xt = torch.tensor(x, requires_grad=True)
    out = layer(xt)
    g = rng.normal(size=out.shape).astype(dtype)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out.detach().numpy(), R.conv_forward(p, x)[0], **TOL[dtype])
    grads = R.conv_param_grads(p, x, g, mode)
    want_dx = R.conv2d_input_grad(g, _oracle_matrix(mode, p, state), x.shape, p.stride, p.padding,
                                  p.dilation, p.groups)
    np.testing.assert_allclose(layer.weight.grad.numpy(), grads["weight"], **TOL[dtype])
    np.testing.assert_allclose(layer.bias.grad.numpy(), grads["bias"], **TOL[dtype])
    np.testing.assert_allclose(xt.grad.numpy(), want_dx, **TOL[dtype])
    if mode == "kp":  # B is a Parameter whose gradient is ∂W
        assert isinstance(layer.feedback, nn.Parameter)
        np.testing.assert_allclose(layer.feedback.grad.numpy(), grads["feedback"], **TOL[dtype])
    else:
        assert layer.feedback.grad is None and not layer.feedback.requires_grad
    if mode == "brsf":
        assert layer.brsf_state[1] == state[1] + 1
    if mode != "bp":  # ... and it is not backprop
        bp_dx = R.conv2d_input_grad(g, p.weight, x.shape, p.stride, p.padding, p.dilation, p.groups)
        assert _rel_dist(xt.grad.numpy(), bp_dx) > 0.05


def test_brsf_draws_anew_each_step_only_when_a_backward_can_follow():
    rng = np.random.default_rng(1)
    p = _params(rng, *VARIANTS[1])
    layer = _layer(p, "brsf")
    x = rng.normal(size=X_SHAPE)
    state = layer.brsf_state.clone()
    with torch.no_grad():
        y0 = layer(torch.from_numpy(x))
    assert torch.equal(layer.brsf_state, state)  # inference draws nothing
    dxs = []
    for step in range(2):
        xt = torch.tensor(x, requires_grad=True)
        y = layer(xt)
        torch.testing.assert_close(y.detach(), y0, rtol=0, atol=0)
        y.sum().backward()
        assert layer.brsf_state.tolist() == [int(state[0]), step + 1]
        want = R.conv2d_input_grad(np.ones(y.shape), _replayed_brsf_matrix(p.weight, [state[0], step]),
                                   x.shape, p.stride, p.padding, p.dilation, p.groups)
        np.testing.assert_allclose(xt.grad.numpy(), want, **TOL[np.float64])
        dxs.append(xt.grad.numpy())
    assert not np.allclose(dxs[0], dxs[1])


def test_unbatched_input_is_one_sample_of_a_batch():
    rng = np.random.default_rng(2)
    p = _params(rng, *VARIANTS[3])
    x = rng.normal(size=X_SHAPE[1:])
    layer = _layer(p, "fa")
    xt = torch.tensor(x, requires_grad=True)
    out = layer(xt)
    assert out.shape == (p.out_channels,) + p.output_shape(x.shape)[1:]
    g = rng.normal(size=out.shape)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out.detach().numpy(), R.conv_forward(p, x[None])[0][0], **TOL[np.float64])
    grads, dx = R.conv_backward(p, x[None], g[None], "fa")
    np.testing.assert_allclose(xt.grad.numpy(), dx[0], **TOL[np.float64])
    np.testing.assert_allclose(layer.weight.grad.numpy(), grads["weight"], **TOL[np.float64])
    np.testing.assert_allclose(layer.bias.grad.numpy(), grads["bias"], **TOL[np.float64])
    xf = torch.tensor(x, requires_grad=True)  # the functional form too, with 'same' padding
    w, b = torch.from_numpy(p.weight), torch.from_numpy(p.feedback)
    y = conv2d_fa(xf, w, b, None, 1, "same", p.dilation, p.groups)
    torch.testing.assert_close(y, F.conv2d(torch.from_numpy(x), w, None, 1, "same", p.dilation, p.groups))
    y.backward(torch.ones_like(y))
    assert xf.grad.shape == x.shape


def _same_pads(kernel, dilation):
    """(top, bottom, left, right) of padding='same': d(k − 1) in all, the odd one at the end."""
    (kh, kw), (dh, dw) = kernel, dilation
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return th // 2, th - th // 2, tw // 2, tw - tw // 2


SAME_CASES = [((3, 3), (1, 1)), ((4, 4), (1, 1)), ((2, 5), (1, 1)), ((4, 3), (2, 1)), ((2, 2), (3, 2))]


@pytest.mark.parametrize("kernel,dilation", SAME_CASES)
def test_same_padding_matches_f_conv2d_forward_and_the_oracle_backward(kernel, dilation):
    """Odd and even kernels: the forward is F.conv2d(padding='same')'s; the backward is the oracle's
    on x zero-padded by hand (the extra row/column at the bottom/right), cropped back."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 7, 9))
    w, b, bias = rng.normal(size=(6, 2) + kernel), rng.normal(size=(6, 2) + kernel), rng.normal(size=6)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    y = conv2d_fa(xt, wt, torch.from_numpy(b), torch.from_numpy(bias), 1, "same", dilation, 2)
    torch.testing.assert_close(
        y, F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias), 1, "same", dilation, 2),
        rtol=1e-12, atol=1e-12)
    assert y.shape == (2, 6, 7, 9)
    g = rng.normal(size=y.shape)
    y.backward(torch.from_numpy(g))
    top, bottom, left, right = _same_pads(kernel, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    dxp = R.conv2d_input_grad(g, b, xp.shape, 1, 0, dilation, 2)
    np.testing.assert_allclose(xt.grad.numpy(), dxp[:, :, top:top + 7, left:left + 9], **TOL[np.float64])
    np.testing.assert_allclose(wt.grad.numpy(), R.conv2d_weight_grad(xp, g, w.shape, 1, 0, dilation, 2),
                               **TOL[np.float64])
    # the module agrees with nn.Conv2d(padding='same'): forward, and in mode bp the backward too
    conv = nn.Conv2d(4, 6, kernel, padding="same", dilation=dilation, groups=2, dtype=torch.float64)
    layer = Conv2dFA(4, 6, kernel, padding="same", dilation=dilation, groups=2, mode="bp",
                     dtype=torch.float64)
    _check_like_conv(layer, conv, x, g)


def test_valid_padding_is_no_padding():
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(2, 3, 6, 7)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=(4, 3, 3, 2))
    xa, xb = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    wt, bt = torch.from_numpy(w), torch.from_numpy(b)
    ya, yb = conv2d_fa(xa, wt, bt, padding="valid"), conv2d_fa(xb, wt, bt, padding=0)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    g = torch.from_numpy(rng.normal(size=ya.shape))
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)
    conv = nn.Conv2d(3, 4, (3, 2), padding="valid", dtype=torch.float64)
    _check_like_conv(Conv2dFA(3, 4, (3, 2), padding="valid", mode="bp", dtype=torch.float64), conv, x,
                     g.numpy())


def _check_like_conv(layer: Conv2dFA, conv: nn.Conv2d, x: np.ndarray, g: np.ndarray) -> None:
    """`layer` (mode bp), given `conv`'s weights: nn.Conv2d's forward and gradients, to the bit."""
    with torch.no_grad():
        layer.weight.copy_(conv.weight)
        layer.bias.copy_(conv.bias)
    dtype = conv.weight.dtype
    xa, xb = (torch.tensor(x, dtype=dtype, requires_grad=True) for _ in range(2))
    ya, yb = layer(xa), conv(xb)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    ya.backward(torch.tensor(g, dtype=dtype))
    yb.backward(torch.tensor(g, dtype=dtype))
    for got, want in ((xa.grad, xb.grad), (layer.weight.grad, conv.weight.grad),
                      (layer.bias.grad, conv.bias.grad)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


#: (padding, kernel, the F.pad amounts (left, right, top, bottom) it means)
PADDINGS = [(1, (3, 3), (1, 1, 1, 1)), ((2, 1), (3, 2), (1, 1, 2, 2)), ("same", (4, 3), (1, 1, 1, 2))]


@pytest.mark.parametrize("padding,kernel,pads", PADDINGS, ids=["1", "(2,1)", "same-even"])
@pytest.mark.parametrize("padding_mode", Conv2dFA.PADDING_MODES)
def test_padding_modes(padding_mode, padding, kernel, pads):
    """nn.Conv2d's forward and (mode bp) backward; in mode fa, ∂x is the pad's adjoint (autograd of
    F.pad) applied to torch's transposed convolution of g with B, and ∂W is the oracle's on the
    padded input."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 6, 7))
    conv = nn.Conv2d(4, 6, kernel, padding=padding, padding_mode=padding_mode, dtype=torch.float64)
    g = rng.normal(size=conv(torch.from_numpy(x)).shape)
    kwargs = dict(padding=padding, padding_mode=padding_mode, dtype=torch.float64)
    _check_like_conv(Conv2dFA(4, 6, kernel, mode="bp", **kwargs), conv, x, g)
    fa = Conv2dFA(4, 6, kernel, mode="fa", **kwargs)
    xt = torch.tensor(x, requires_grad=True)
    fa(xt).backward(torch.from_numpy(g))
    xr = torch.tensor(x, requires_grad=True)
    xp = F.pad(xr, pads, mode="constant" if padding_mode == "zeros" else padding_mode)
    xp.backward(torch.nn.grad.conv2d_input(xp.shape, fa.feedback, torch.from_numpy(g)))
    torch.testing.assert_close(xt.grad, xr.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fa.weight.grad.numpy(),
                               R.conv2d_weight_grad(xp.detach().numpy(), g, tuple(fa.weight.shape)),
                               **TOL[np.float64])


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_bp_mode_equals_nn_conv2d_and_passes_gradcheck(variant):
    stride, padding, dilation, groups, cout = variant
    torch.manual_seed(0)
    conv = nn.Conv2d(CIN, cout, KERNEL, stride, padding, dilation, groups, dtype=torch.float64)
    layer = Conv2dFA(CIN, cout, KERNEL, stride, padding, dilation, groups, mode="bp", dtype=torch.float64)
    rng = np.random.default_rng(6)
    x = rng.normal(size=X_SHAPE)
    _check_like_conv(layer, conv, x, rng.normal(size=conv(torch.from_numpy(x)).shape))
    xs = torch.tensor(x[:1, :, :5, :5], requires_grad=True)
    assert torch.autograd.gradcheck(layer, (xs,))
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    # feedback = W itself: x, W and b all against finite differences
    assert torch.autograd.gradcheck(
        lambda x_, w_, b_: conv2d_fa(x_, w_, w_.detach(), b_, stride, padding, dilation, groups), (xs, w, b))


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_bp_mode_is_nn_conv2d_to_the_bit_in_float32(variant):
    stride, padding, dilation, groups, cout = variant
    torch.manual_seed(1)
    conv = nn.Conv2d(CIN, cout, KERNEL, stride, padding, dilation, groups)
    layer = Conv2dFA(CIN, cout, KERNEL, stride, padding, dilation, groups, mode="bp")
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 6, 11, 10))
    _check_like_conv(layer, conv, x, rng.normal(size=conv(torch.tensor(x, dtype=torch.float32)).shape))


def test_fa_mode_fails_gradcheck():
    """The test above could fail: with a random B, ∂x is not the derivative."""
    torch.manual_seed(0)
    layer = Conv2dFA(3, 4, 3, padding=1, mode="fa", dtype=torch.float64)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(layer, (x,), raise_exception=False)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_input_gradient_is_torch_conv2d_input_with_b_not_w(variant):
    stride, padding, dilation, groups, cout = variant
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(size=X_SHAPE), requires_grad=True)
    w = torch.tensor(rng.normal(size=(cout, CIN // groups) + KERNEL), requires_grad=True)
    b = torch.tensor(rng.normal(size=w.shape))
    y = conv2d_fa(x, w, b, None, stride, padding, dilation, groups)
    g = torch.tensor(rng.normal(size=y.shape))
    y.backward(g)
    want = torch.nn.grad.conv2d_input(x.shape, b, g, stride, padding, dilation, groups)
    torch.testing.assert_close(x.grad, want, rtol=1e-12, atol=1e-12)
    bp = torch.nn.grad.conv2d_input(x.shape, w.detach(), g, stride, padding, dilation, groups)
    assert _rel_dist(x.grad.numpy(), bp.numpy()) > 0.5
    torch.testing.assert_close(
        w.grad, torch.nn.grad.conv2d_weight(x.detach(), w.shape, g, stride, padding, dilation, groups),
        rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3),  # 0: an unbatched (C, H, W) input
    groups=st.integers(1, 3),
    cin_per_group=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    bias=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_any_geometry_matches_the_oracle(n, groups, cin_per_group, cout_per_group, kernel, stride, padding,
                                         dilation, extra, bias, dtype, seed):
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True))
    hw = tuple(max(1, s - 2 * p + e) for s, p, e in zip(span, padding, extra, strict=True))
    assume(all(h + 2 * p >= s for h, p, s in zip(hw, padding, span, strict=True)))
    rng = np.random.default_rng(seed)
    shape = (cout_per_group * groups, cin_per_group) + kernel
    p = ConvParams(rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype),
                   rng.normal(size=shape[0]).astype(dtype) if bias else None,
                   stride, padding, dilation, groups)
    x = rng.normal(size=(max(n, 1), cin_per_group * groups) + hw).astype(dtype)
    xt = torch.tensor(x[0] if n == 0 else x, requires_grad=True)
    wt = torch.tensor(p.weight, requires_grad=True)
    bt = torch.tensor(p.bias, requires_grad=True) if bias else None
    y = conv2d_fa(xt, wt, torch.from_numpy(p.feedback), bt, stride, padding, dilation, groups)
    z = R.conv_forward(p, x)[0]
    g = rng.normal(size=z.shape).astype(dtype)
    y.backward(torch.from_numpy(g[0] if n == 0 else g))
    grads, dx = R.conv_backward(p, x, g, "fa")
    np.testing.assert_allclose(y.detach().numpy(), z[0] if n == 0 else z, **TOL[dtype])
    np.testing.assert_allclose(xt.grad.numpy(), dx[0] if n == 0 else dx, **TOL[dtype])
    np.testing.assert_allclose(wt.grad.numpy(), grads["weight"], **TOL[dtype])
    if bias:
        np.testing.assert_allclose(bt.grad.numpy(), grads["bias"], **TOL[dtype])


# ---------------------------------------------------------------- bad input: clear errors, nothing changed


def _snapshot(layer):
    return {k: v.clone() for k, v in layer.state_dict().items()}


def _unchanged(layer, snap):
    return set(layer.state_dict()) == set(snap) and all(
        torch.equal(v, snap[k]) if v.device.type != "meta" else v.shape == snap[k].shape  # no data
        for k, v in layer.state_dict().items())


def _brsf_layer(*args, **kwargs) -> Conv2dFA:
    """brsf: the one mode whose forward changes state (it draws), so 'unchanged' means something."""
    return Conv2dFA(*args, mode="brsf", generator=torch.Generator().manual_seed(0), **kwargs)


NAME_3_6_5 = r"Conv2dFA\(3, 6, kernel_size=\(5, 5\), stride=\(1, 1\), mode='brsf'\)"


def test_wrong_channels_name_the_layer_and_the_shapes():
    layer = _brsf_layer(3, 6, 5)
    snap = _snapshot(layer)
    with pytest.raises(ValueError, match=NAME_3_6_5 + r": input has shape \(8, 4, 32, 32\), expected "
                       r"\(N, 3, H, W\) or \(3, H, W\) \(weight \(6, 3, 5, 5\), groups 1\)"):
        layer(torch.randn(8, 4, 32, 32, requires_grad=True))
    for bad in (torch.randn(4, 32, 32), torch.randn(2, 1, 3, 32, 32), torch.randn(32, 32)):
        with pytest.raises(ValueError, match=NAME_3_6_5 + r": input has shape"):
            layer(bad.requires_grad_())
    grouped = _brsf_layer(4, 6, 3, groups=2)
    with pytest.raises(ValueError, match=r"expected \(N, 4, H, W\).*weight \(6, 2, 3, 3\), groups 2"):
        grouped(torch.randn(2, 2, 8, 8))
    with pytest.raises(ValueError,
                       match=r"conv2d_fa: input has shape \(2, 5, 8, 8\), expected \(N, 3, H, W\)"):
        conv2d_fa(torch.randn(2, 5, 8, 8), torch.randn(6, 3, 5, 5), torch.randn(6, 3, 5, 5))
    assert _unchanged(layer, snap)


def test_weight_and_feedback_shapes():
    with pytest.raises(ValueError, match=r"conv2d_fa: weight must be 4-d \(out_ch, in_ch/groups, kh, kw\), "
                       r"got shape \(6, 3, 5\)"):
        conv2d_fa(torch.randn(2, 3, 8, 8), torch.randn(6, 3, 5), torch.randn(6, 3, 5))
    with pytest.raises(ValueError, match=r"conv2d_fa: feedback must have the weight's shape \(6, 3, 5, 5\), "
                       r"got \(6, 3, 3, 3\)"):
        conv2d_fa(torch.randn(2, 3, 8, 8), torch.randn(6, 3, 5, 5), torch.randn(6, 3, 3, 3))
    layer = _brsf_layer(3, 6, 5)
    snap = _snapshot(layer)
    with pytest.raises(RuntimeError, match="feedback"):
        layer.load_state_dict({**layer.state_dict(), "feedback": torch.zeros(6, 3, 3, 3)})
    assert _unchanged(layer, snap)


def test_a_reassigned_feedback_of_the_wrong_shape_is_refused_naming_the_layer():
    """Caught before anything runs, like LinearFA does (the forward itself would not notice: only
    the backward reads B)."""
    layer = _brsf_layer(3, 6, 5)
    layer.feedback = torch.zeros(6, 3, 3, 3)
    snap = _snapshot(layer)
    with pytest.raises(ValueError, match=NAME_3_6_5 + r": feedback must have the weight's shape"):
        layer(torch.randn(2, 3, 8, 8, requires_grad=True))
    assert _unchanged(layer, snap)


def test_groups():
    with pytest.raises(ValueError, match=r"conv2d_fa: groups must be an int >= 1 dividing out_ch 6, got 4"):
        conv2d_fa(torch.randn(2, 4, 8, 8), torch.randn(6, 1, 3, 3), torch.randn(6, 1, 3, 3), groups=4)
    with pytest.raises(ValueError, match="groups must be an int >= 1 dividing out_ch 6, got 0"):
        conv2d_fa(torch.randn(2, 4, 8, 8), torch.randn(6, 1, 3, 3), torch.randn(6, 1, 3, 3), groups=0)
    with pytest.raises(ValueError, match=r"Conv2dFA\(4, 6, 3\): in_channels and out_channels must be "
                       "divisible by groups 4"):
        Conv2dFA(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match=r"Conv2dFA\(5, 6, 3\).*divisible by groups 2"):
        Conv2dFA(5, 6, 3, groups=2)


def test_mixed_dtypes_outside_autocast_and_what_autocast_allows():
    layer = _brsf_layer(3, 6, 5)
    snap = _snapshot(layer)
    with pytest.raises(TypeError, match=NAME_3_6_5 + r": x, weight, feedback, bias must share one "
                       r"dtype, got x torch.float64, weight torch.float32, feedback torch.float32, "
                       r"bias torch.float32"):
        layer(torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True))
    with pytest.raises(TypeError, match=NAME_3_6_5 + r".*x torch.bfloat16, weight torch.float32"):
        layer(torch.randn(2, 3, 8, 8, dtype=torch.bfloat16, requires_grad=True))
    with pytest.raises(TypeError,
                       match=NAME_3_6_5 + r": x must be a floating-point tensor, got dtype torch.int64"):
        layer(torch.ones(2, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match="conv2d_fa: x, weight, feedback must share one dtype"):
        conv2d_fa(torch.randn(2, 3, 8, 8), torch.randn(6, 3, 5, 5),
                  torch.randn(6, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="conv2d_fa: .*bias torch.float64"):
        conv2d_fa(torch.randn(2, 3, 8, 8), torch.randn(6, 3, 5, 5), torch.randn(6, 3, 5, 5),
                  torch.zeros(6, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match=NAME_3_6_5 + r".*float16.*autocast to torch.bfloat16"):
            layer(torch.randn(2, 3, 8, 8, dtype=torch.float16, requires_grad=True))
    assert _unchanged(layer, snap)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what autocast produces is accepted
        assert layer(torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_a_reassigned_feedback_or_bias_of_another_dtype_is_refused_naming_the_layer():
    layer = _brsf_layer(3, 6, 5)
    layer.feedback = torch.zeros(6, 3, 5, 5, dtype=torch.float64)
    snap = _snapshot(layer)
    with pytest.raises(TypeError, match=NAME_3_6_5 + r".*feedback torch.float64"):
        layer(torch.randn(2, 3, 8, 8, requires_grad=True))
    assert _unchanged(layer, snap)
    layer = _brsf_layer(3, 6, 5)
    layer.bias = nn.Parameter(torch.zeros(6, dtype=torch.float64))
    snap = _snapshot(layer)
    with pytest.raises(TypeError, match=NAME_3_6_5 + r".*bias torch.float64"):
        layer(torch.randn(2, 3, 8, 8, requires_grad=True))
    assert _unchanged(layer, snap)


def test_devices():
    layer = _brsf_layer(3, 6, 5)
    snap = _snapshot(layer)
    with pytest.raises(ValueError,
                       match=NAME_3_6_5 + ": x, weight, feedback, bias must be on one device, got x on meta"):
        layer(torch.ones(2, 3, 8, 8, device="meta"))
    with pytest.raises(ValueError, match="conv2d_fa: .*must be on one device"):
        conv2d_fa(torch.randn(2, 3, 8, 8), torch.randn(6, 3, 5, 5), torch.randn(6, 3, 5, 5, device="meta"))
    assert _unchanged(layer, snap)
    layer.feedback = torch.zeros(6, 3, 5, 5, device="meta")
    with pytest.raises(ValueError, match=NAME_3_6_5 + ": .*must be on one device"):
        layer(torch.ones(2, 3, 8, 8, requires_grad=True))


def test_a_bias_on_another_device_is_refused_naming_the_layer():
    """F.conv2d itself silently computes something with a CPU input and a meta bias."""
    layer = _brsf_layer(3, 6, 5)
    layer.bias = nn.Parameter(torch.zeros(6, device="meta"))
    snap = _snapshot(layer)
    with pytest.raises(ValueError, match=NAME_3_6_5 + ": .*must be on one device"):
        layer(torch.ones(2, 3, 8, 8, requires_grad=True))
    assert _unchanged(layer, snap)


def test_an_input_smaller_than_the_kernel_names_the_layer_and_draws_nothing():
    layer = _brsf_layer(3, 6, 5)
    snap = _snapshot(layer)
    with pytest.raises(ValueError, match=NAME_3_6_5 + r".*\(2, 3, 4, 8\)"):
        layer(torch.randn(2, 3, 4, 8, requires_grad=True))
    assert _unchanged(layer, snap)  # brsf's stream did not advance for a step that never ran


def test_non_tensor_input_and_bad_construction():
    with pytest.raises(TypeError,
                       match=r"Conv2dFA\(3, 6.*must be a torch.Tensor, got ndarray .*torch.from_numpy"):
        Conv2dFA(3, 6, 5)(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(TypeError, match="conv2d_fa: weight must be a torch.Tensor, got list"):
        conv2d_fa(torch.zeros(2, 3, 8, 8), [0.0], torch.zeros(6, 3, 5, 5))
    with pytest.raises(ValueError, match=r"Conv2dFA\(3, 6, 5\): unknown mode 'dfa'.*network-level"):
        Conv2dFA(3, 6, 5, mode="dfa")
    with pytest.raises(ValueError, match=r"padding_mode must be one of .*got 'mirror'"):
        Conv2dFA(3, 6, 5, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        Conv2dFA(3, 6, 5, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"conv2d_fa: padding='same' needs stride 1"):
        conv2d_fa(torch.zeros(2, 3, 8, 8), torch.zeros(6, 3, 5, 5), torch.zeros(6, 3, 5, 5), stride=2,
                  padding="same")
    with pytest.raises(ValueError, match=r"padding must be an int, a pair, 'valid' or 'same', got 'full'"):
        Conv2dFA(3, 6, 5, padding="full")
    with pytest.raises(ValueError, match="unknown init 'he'"):
        Conv2dFA(3, 6, 5, init="he")
    layer = Conv2dFA(3, 6, 5)
    with pytest.raises(ValueError, match="unknown mode 'dfa'"):
        layer.mode = "dfa"
    assert layer.mode == "fa"


def test_second_derivative_raises_clearly():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = conv2d_fa(x, torch.randn(6, 3, 5, 5, requires_grad=True), torch.randn(6, 3, 5, 5)).pow(2).sum()
    (gx,) = torch.autograd.grad(y, x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        gx.sum().backward()


# ---------------------------------------------------------------- module: repr, init, from_conv


@pytest.mark.parametrize("args,kwargs", [
    ((1, 6, 5), {}),
    ((4, 8, (3, 2)), dict(stride=2, padding=(1, 0), dilation=(1, 2), groups=2, bias=False)),
    ((3, 6, 3), dict(padding=1)),
])
def test_extra_repr_is_nn_conv2d_s_plus_the_mode(args, kwargs):
    want = repr(nn.Conv2d(*args, **kwargs)).replace("Conv2d(", "Conv2dFA(", 1)[:-1] + ", mode='frsf')"
    assert repr(Conv2dFA(*args, **kwargs, mode="frsf")) == want


def test_extra_repr_of_string_options():
    assert repr(Conv2dFA(3, 6, 4, padding="same", padding_mode="reflect", mode="kp")) == (
        "Conv2dFA(3, 6, kernel_size=(4, 4), stride=(1, 1), padding='same', padding_mode='reflect', mode='kp')"
    )


def test_reset_parameters_xavier_and_kaiming():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = Conv2dFA(4, 6, (3, 2), groups=2, generator=g1), Conv2dFA(4, 6, (3, 2), groups=2, generator=g2)
    for k in ("weight", "feedback", "bias"):
        torch.testing.assert_close(getattr(a, k), getattr(b, k), rtol=0, atol=0)
    bound = (6 / (2 * 6 + 6 * 6)) ** 0.5  # Glorot uniform with conv fans: in 2·3·2, out 6·3·2
    for t in (a.weight, a.feedback):
        assert t.abs().max() <= bound and t.abs().max() > 0.7 * bound
    assert not torch.equal(a.weight, a.feedback) and torch.equal(a.bias, torch.zeros(6))
    w, fb, bias = a.weight, a.feedback, a.bias
    before = {k: v.clone() for k, v in a.state_dict().items()}
    a.reset_parameters()
    assert a.weight is w and a.feedback is fb and a.bias is bias  # in place
    assert not torch.equal(a.weight, before["weight"]) and not torch.equal(a.feedback, before["feedback"])
    w_now, fb_now = a.weight.detach().clone(), a.feedback.clone()
    a.reset_feedback()  # the feedback only
    assert not torch.equal(a.feedback, fb_now) and torch.equal(a.weight, w_now) and a.feedback is fb
    # kaiming is nn.Conv2d's own init: the same weight from the same global seed
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 6, (3, 2), groups=2)
    torch.manual_seed(7)
    k = Conv2dFA(4, 6, (3, 2), groups=2, init="kaiming")
    torch.testing.assert_close(k.weight, conv.weight, rtol=0, atol=0)
    bound = 1 / 12 ** 0.5  # nn.Conv2d's bias bound 1/sqrt(fan_in), fan_in = (4/2)·3·2
    assert bound >= k.bias.abs().max() > 0 and k.feedback.abs().max() <= bound


def test_from_conv_adopts_the_parameter_objects_and_the_geometry():
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=2,
                     padding_mode="circular", dtype=torch.float64).eval()
    w, b = conv.weight, conv.bias
    fa = Conv2dFA.from_conv(conv, "usf", generator=torch.Generator().manual_seed(0))
    assert fa.weight is w and fa.bias is b and fa.mode == "usf" and not fa.training
    assert (fa.in_channels, fa.out_channels, fa.kernel_size, fa.stride, fa.padding, fa.dilation,
            fa.groups, fa.padding_mode) == (4, 6, (3, 2), (2, 2), (1, 0), (1, 2), 2, "circular")
    assert fa.feedback.dtype == torch.float64 and fa.feedback.shape == w.shape
    assert not fa.feedback.requires_grad and "feedback" not in dict(fa.named_parameters())
    assert fa.feedback.abs().max() <= (6 / (2 * 6 + 6 * 6)) ** 0.5
    assert not torch.equal(fa.feedback, w.detach())
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(fa(x), conv(x), rtol=0, atol=0)
    nobias = Conv2dFA.from_conv(nn.Conv2d(3, 2, 3, bias=False, padding="same"))
    assert nobias.bias is None and nobias.padding == "same"
    kp = Conv2dFA.from_conv(nn.Conv2d(3, 2, 3), "kp")
    assert isinstance(kp.feedback, nn.Parameter) and [n for n, _ in kp.named_parameters()] == [
        "weight", "bias", "feedback"]
    with pytest.raises(ValueError, match="not initialised yet"):
        Conv2dFA.from_conv(nn.LazyConv2d(3, 3))


# ---------------------------------------------------------------- convert on a small CNN


def _cnn_spec(seed=0, dtype=np.float64, bias_scale=0.1):
    layers = R.init_small_cnn(seed, input_shape=(2, 8, 8), channels=(3, 4), classes=5, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for p in layers:
        if isinstance(p, (ConvParams, DenseParams)):
            p.bias[:] = rng.normal(size=p.bias.shape) * bias_scale
    return layers


def _plain_cnn(layers, dtype=torch.float64) -> nn.Sequential:
    """nn.Conv2d / nn.Linear / pooling / flatten modules holding `layers`' weights and biases."""
    mods = []
    for p in layers:
        if isinstance(p, ConvParams):
            m = nn.Conv2d(p.in_channels, p.out_channels, p.kernel_size, p.stride, p.padding, p.dilation,
                          p.groups, dtype=dtype)
        elif isinstance(p, DenseParams):
            m = nn.Linear(p.in_features, p.out_features, dtype=dtype)
        elif isinstance(p, Pool2d):
            mods.append((nn.AvgPool2d if p.kind == "avg" else nn.MaxPool2d)(p.kernel_size, p.stride))
            continue
        else:
            mods.append(nn.Flatten())
            continue
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(p.weight))
            m.bias.copy_(torch.from_numpy(p.bias))
        mods.append(m)
        if p.activation != "identity":
            mods.append(ACTIVATION_MODULES[p.activation]())
    return nn.Sequential(*mods)


def _fa_modules(model):
    return [m for m in model.modules() if isinstance(m, (Conv2dFA, LinearFA))]


def _load_feedback(model, layers):
    with torch.no_grad():
        for m, p in zip(_fa_modules(model), [p for p in layers if hasattr(p, "feedback")], strict=True):
            m.feedback.copy_(torch.from_numpy(p.feedback))


def _data(layers, n=6, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 8, 8)).astype(dtype)
    y = rng.normal(size=(n,) + R.check_cnn(layers, x.shape)[-1]).astype(dtype)
    return x, y


def test_convert_replaces_convs_and_linears_and_an_optimiser_built_before_trains_with_fa():
    layers = _cnn_spec()
    model = _plain_cnn(layers)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "ReLU", "AvgPool2d", "Conv2d", "ReLU", "AvgPool2d", "Flatten", "Linear"]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # built BEFORE convert
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    keys = set(model.state_dict())
    x, y = _data(layers)
    before = model(torch.from_numpy(x))
    assert convert(model, "fa") == 3
    assert [type(m).__name__ for m in model] == [
        "Conv2dFA", "ReLU", "AvgPool2d", "Conv2dFA", "ReLU", "AvgPool2d", "Flatten", "LinearFA"]
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in model.modules())
    assert [n for n, _ in model.named_parameters()] == names
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert set(model.state_dict()) == keys | {"0.feedback", "3.feedback", "7.feedback"}
    torch.testing.assert_close(model(torch.from_numpy(x)), before, rtol=0, atol=0)
    assert convert(model) == 0
    _load_feedback(model, layers)
    nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    opt.step()
    fa = R.cnn_gradients(layers, x, y, "fa")
    bp = R.cnn_gradients(layers, x, y, "bp")
    for m, p, g in zip(_fa_modules(model), [p for p in layers if hasattr(p, "weight")],
                       [g for g in fa.layers if g], strict=True):
        np.testing.assert_allclose(m.weight.detach().numpy(), p.weight - 0.5 * g["weight"], rtol=1e-11,
                                   atol=1e-14)
        np.testing.assert_allclose(m.bias.detach().numpy(), p.bias - 0.5 * g["bias"], rtol=1e-11, atol=1e-14)
    assert _rel_dist(fa.layers[0]["weight"], bp.layers[0]["weight"]) > 0.05  # the step was not BP's


def test_convert_kp_and_brsf_on_a_cnn():
    layers = _cnn_spec()
    x, y = _data(layers)
    model = _plain_cnn(layers)
    convert(model, "kp")
    _load_feedback(model, layers)
    assert {"0.feedback", "3.feedback", "7.feedback"} <= {n for n, _ in model.named_parameters()}
    nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    want = R.cnn_gradients(layers, x, y, "kp")
    for m, g in zip(_fa_modules(model), [g for g in want.layers if g], strict=True):
        np.testing.assert_allclose(m.feedback.grad.numpy(), g["feedback"], rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(m.weight.grad.numpy(), g["weight"], rtol=1e-11, atol=1e-14)
    model = _plain_cnn(layers)
    keys = set(model.state_dict())
    convert(model, "brsf", generator=torch.Generator().manual_seed(0))
    added = {f"{i}.{k}" for i in (0, 3, 7) for k in ("feedback", "brsf_state")}
    assert set(model.state_dict()) == keys | added


# ---------------------------------------------------------------- autocast


def test_autocast_cpu_bf16_runs_like_nn_conv2d_and_keeps_fa():
    layers = _cnn_spec(dtype=np.float32)
    x, y = _data(layers, n=8, dtype=np.float32)
    converted, plain = _plain_cnn(layers, torch.float32), _plain_cnn(layers, torch.float32)
    convert(converted)
    _load_feedback(converted, layers)
    xt = torch.from_numpy(x).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = converted(xt)
        ref = plain(torch.from_numpy(x))
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # nn.Conv2d's bf16 forward, to the bit
    nn.functional.mse_loss(out.float(), torch.from_numpy(y)).backward()
    mods = _fa_modules(converted)
    assert all(m.weight.grad.dtype == m.bias.grad.dtype == torch.float32 for m in mods)
    assert xt.grad.dtype == torch.float32
    fa = R.cnn_gradients(layers, x, y, "fa")
    bp = R.cnn_gradients(layers, x, y, "bp")
    fa_grads, bp_grads = [g for g in fa.layers if g], [g for g in bp.layers if g]
    # bf16 tolerance: nn.Conv2d's own bf16 BP gradients of this net are up to 7 % (in norm) from
    # the fp32 oracle's, dL/dx furthest (3 layers of bf16 products)
    for m, want in zip(mods, fa_grads, strict=True):
        assert _rel_dist(m.weight.grad.numpy(), want["weight"]) < 0.1
    # the convs' weight gradients and dL/dx carry the FA signal: near FA, far from BP
    d_fa = [_rel_dist(mods[i].weight.grad.numpy(), fa_grads[i]["weight"]) for i in (0, 1)]
    d_bp = [_rel_dist(mods[i].weight.grad.numpy(), bp_grads[i]["weight"]) for i in (0, 1)]
    assert max(d_fa) < 0.1 and min(d_bp) > 5 * max(d_fa)
    assert _rel_dist(xt.grad.numpy(), fa.input) < 0.1 < 0.5 < _rel_dist(xt.grad.numpy(), bp.input)


# ---------------------------------------------------------------- torch.func


def test_vmap_grad_per_sample_gradients_equal_a_loop_and_sum_to_the_oracle():
    from torch.func import functional_call, grad, vmap

    layers = _cnn_spec()
    x, y = _data(layers, n=4)
    model = _plain_cnn(layers)
    convert(model)
    _load_feedback(model, layers)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, xi, yi):
        return ((functional_call(model, (p, buffers), (xi.unsqueeze(0),)).squeeze(0) - yi) ** 2).sum()

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, xt, yt)
    for i in range(len(x)):
        model.zero_grad()
        loss(dict(model.named_parameters()), xt[i], yt[i]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-12, atol=1e-15)
    want = R.cnn_gradients(layers, x, y, "fa")  # its loss is the mean over y.size elements
    for i, name in ((0, "0"), (2, "3"), (5, "7")):  # spec index -> module name
        for k, v in want.layers[i].items():
            np.testing.assert_allclose(per_sample[f"{name}.{k}"].sum(0).numpy() / y.size, v,
                                       rtol=1e-10, atol=1e-14)


def test_brsf_under_torch_func_draws_like_eager_and_advances_its_stream():
    """brsf's draw is a custom op on the detached weight: under torch.func.grad it draws the same R
    as an eager step from the same state, and the stream advances by one draw per step."""
    from torch.func import functional_call, grad

    layer = _brsf_layer(2, 3, 3)
    twin = copy.deepcopy(layer)
    x = torch.randn(2, 2, 5, 5, dtype=layer.weight.dtype)
    params = {k: v.detach() for k, v in layer.named_parameters()}
    got = grad(lambda p, xi: functional_call(layer, (p, dict(layer.named_buffers())), (xi,)).sum(),
               argnums=(0, 1))(params, x)
    xe = x.clone().requires_grad_()
    twin(xe).sum().backward()
    torch.testing.assert_close(got[1], xe.grad, rtol=0, atol=0)  # the same R reached the input
    torch.testing.assert_close(got[0]["weight"], twin.weight.grad, rtol=0, atol=0)
    assert torch.equal(layer.brsf_state, twin.brsf_state) and int(layer.brsf_state[1]) == 1


# ---------------------------------------------------------------- torch.compile


def test_compile_fullgraph_a_conv_per_mode_equals_eager_and_differs_from_bp():
    """One compiled CNN with a Conv2dFA in every mode: no graph break (fullgraph=True raises on one),
    the same gradients as the same network run eagerly (brsf's draws included, from the same
    state), twice, and not backprop's."""
    torch._dynamo.reset()
    channels = [2, 3, 4, 3, 4, 3, 3]
    assert len(MODES) == len(channels) - 1

    def build():
        mods = []
        for i, m in enumerate(MODES):
            mods += [Conv2dFA(channels[i], channels[i + 1], 3, padding=1, mode=m, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(i)), nn.Tanh()]
        return nn.Sequential(*mods[:-1])

    x = torch.randn(3, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y = torch.randn(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert_compiled_equals_eager_and_differs_from_bp(build, x, y, _fa_modules)


# ---------------------------------------------------------------- DDP

DDP_WORKER = Path(__file__).with_name("ddp_conv_worker.py")


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="this torch build has no torch.distributed with the gloo backend")
def test_ddp_two_processes_train_a_converted_cnn_like_one_process_on_the_full_batch():
    """2 CPU processes (gloo, 127.0.0.1), each converting the CNN with its own generator (different
    feedback and brsf seeds), conv 0 in brsf, conv 3 in fa, the linear head in kp: after 3 SGD
    steps every rank's parameters equal a single-process run on the full batch, and the feedback
    tensors and brsf's stream are rank 0's on both ranks (DDP broadcasts buffers from rank 0)."""
    from ddp_conv_worker import build_model

    from pyfa.torch.ddp import run_ranks

    layers = _cnn_spec()
    x, y = _data(layers, n=6)
    arrays = {k: v.numpy() for k, v in _plain_cnn(layers).state_dict().items()}
    steps, lr, seeds = 3, 0.2, (1, 2)
    with tempfile.TemporaryDirectory(prefix="pyfa-ddp-conv-") as tmp:
        np.savez(os.path.join(tmp, "inputs.npz"), x=x, y=y, **arrays)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump({"world_size": 2, "steps": steps, "lr": lr, "seeds": seeds}, f)
        run_ranks(lambda r: [sys.executable, str(DDP_WORKER), tmp, str(r)], 2, tmp, timeout=150.0)
        ranks = []
        for r in range(2):
            with np.load(os.path.join(tmp, f"rank{r}.npz")) as z:
                ranks.append(dict(z))
    single, other, bp = (build_model(arrays, s) for s in (seeds[0], seeds[1], seeds[0]))
    for m in _fa_modules(bp):
        m.mode = "bp"
    for model in (single, bp):
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
    assert _rel_dist(ranks[0]["0.weight"] - arrays["0.weight"],
                     bp.state_dict()["0.weight"].numpy() - arrays["0.weight"]) > 0.05  # not BP's steps
    state = single.state_dict()
    assert set(ranks[0]) == set(ranks[1]) == set(state)
    assert {"0.brsf_state", "0.feedback", "3.feedback", "7.feedback"} <= set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])
        if k in ("0.feedback", "3.feedback", "0.brsf_state"):  # fixed: rank 0's conversion
            np.testing.assert_array_equal(ranks[0][k], v.numpy())
            assert not np.array_equal(v.numpy(), other.state_dict()[k].numpy()), k
        else:  # trained: weights, biases and kp's feedback
            np.testing.assert_allclose(ranks[0][k], v.numpy(), rtol=1e-12, atol=1e-15)
    assert int(state["0.brsf_state"][1]) == steps
    assert not np.allclose(state["0.weight"].numpy(), arrays["0.weight"])
