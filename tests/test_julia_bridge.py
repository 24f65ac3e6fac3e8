"""pyfa.julia: the juliacall bridge to the Julia package PyFA.

Tests marked `julia` run real Julia through juliacall and skip, with the reason, where it cannot
start. The others run everywhere: import lightness, the no-Julia path, juliapkg.json, and input
checks that must fire before Julia is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from julia_helpers import (  # noqa: F401
    JULIAPKG_JSON,
    PYFA_JL,
    REGISTERED_UUIDS,
    ROOT,
    julia_or_skip,
    read_project_toml,
)  # noqa: F401

from pyfa import reference
from pyfa.network import DenseParams, init_mlp


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON_JULIACALL_", "PYTHON_JULIAPKG_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run(code: str, env: dict, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# -- everywhere -----------------------------------------------------------------------------------

def test_import_starts_nothing():
    r = _run("""
        import sys
        import pyfa, pyfa.julia, pyfa.julia.forum
        heavy = sorted(m for m in sys.modules
                       if m.split('.')[0] in ('juliacall', 'juliapkg', 'torch'))
        print(heavy)
    """, _clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_julia_is_reported_not_raised(tmp_path):
    """With no usable Julia (a bad PYTHON_JULIAPKG_EXE), available() is False, load() explains."""
    r = _run("""
        import sys, time
        import pyfa.julia as pj
        calls = []
        real = pj.import_juliacall
        pj.import_juliacall = lambda: (calls.append(1), real())[1]
        t = time.perf_counter()
        ok = pj.available()
        dt = time.perf_counter() - t
        reason = pj.unavailable_reason()
        try:
            pj.load()
            raised = None
        except pj.JuliaUnavailableError as e:
            raised = str(e)
        assert pj.available() is False
        print(repr((ok, reason, raised, len(calls), 'juliacall' in sys.modules)))
        print(f"available() took {dt:.2f}s", file=sys.stderr)
    """, _clean_env(PYTHON_JULIAPKG_EXE=str(tmp_path / "no-julia-here"),
                    PYTHON_JULIAPKG_PROJECT=str(tmp_path / "project")), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ok, reason, raised, calls, juliacall_left = eval(r.stdout.strip().splitlines()[-1])
    assert ok is False
    assert reason and raised == reason  # load() raises with the very reason
    assert "no usable Julia" in reason and "PYTHON_JULIAPKG_EXE" in reason
    assert "install Julia" in reason  # ... and what to do
    assert calls == 1  # the failure is cached: juliacall is tried once per process
    assert not juliacall_left


def test_available_false_means_load_raises_with_reason():
    import pyfa.julia as pj

    if pj.available():
        assert pj.unavailable_reason() is None
        return
    reason = pj.unavailable_reason()
    assert isinstance(reason, str) and reason.startswith("Julia is unavailable")
    with pytest.raises(pj.JuliaUnavailableError) as e:
        pj.load()
    assert str(e.value) == reason
    assert isinstance(e.value, RuntimeError)


def test_bad_input_is_rejected_before_julia():
    """Shape, mode and dtype errors are ValueError/TypeError, never 'Julia is unavailable'."""
    from pyfa.julia import JuliaChain

    layers = init_mlp([4, 3, 2], seed=0)
    bad = [layers[0], DenseParams(np.zeros((2, 5), np.float32), np.zeros((2, 5), np.float32),
                                  None)]
    with pytest.raises(ValueError, match="layer 1: takes 5 inputs"):
        JuliaChain.from_params(bad)
    with pytest.raises(ValueError, match="unknown mode"):
        JuliaChain.from_params(layers, mode="kp!")
    with pytest.raises(TypeError, match="float32 or float64"):
        JuliaChain.from_params(layers, dtype=np.int32)
    with pytest.raises(ValueError, match="at least one layer"):
        JuliaChain.from_params([])


def test_juliapkg_json_matches_the_julia_package():
    deps = json.loads(JULIAPKG_JSON.read_text())
    assert deps["julia"] == "1.10"
    pkgs = deps["packages"]
    assert {"Flux", "ChainRulesCore", "Zygote", "Optimisers", "PyFA"} <= set(pkgs)
    for name, spec in pkgs.items():
        if name != "PyFA":
            assert spec["uuid"] == REGISTERED_UUIDS[name], name
            assert spec["version"]
    pyfa_dir = (JULIAPKG_JSON.parent / pkgs["PyFA"]["path"]).resolve()
    assert pyfa_dir == PYFA_JL.resolve()
    assert pkgs["PyFA"]["dev"] is True
    project = read_project_toml((pyfa_dir / "Project.toml").read_text())
    assert project["name"] == "PyFA"
    assert project["uuid"] == pkgs["PyFA"]["uuid"]
    assert project["version"] == "0.1.0"
    for table in ("deps", "extras"):
        for name, uuid in project[table].items():
            assert uuid == REGISTERED_UUIDS[name], f"[{table}] {name}"
            if name in pkgs:
                assert pkgs[name]["uuid"] == uuid
    assert project["compat"]["julia"] == "1.10"
    assert project["compat"]["Flux"] == "0.16"
    assert set(project["targets"]["test"]) == {"ChainRulesTestUtils", "Pkg", "Test"}
    assert (pyfa_dir / "src" / "PyFA.jl").is_file()
    assert (pyfa_dir / "test" / "runtests.jl").is_file()


def test_gpu_uuids_are_the_registered_ones():
    from pyfa.julia import JULIA_UUIDS

    assert JULIA_UUIDS == {k: REGISTERED_UUIDS[k] for k in ("CUDA", "cuDNN")}


def test_juliapkg_resolves_pyfa_from_the_checkout(tmp_path):
    """juliapkg's own requirement search (no Julia needed) finds PyFA at julia/PyFA."""
    pytest.importorskip("juliapkg")
    r = _run("""
        import json
        from juliapkg.deps import find_requirements
        compat, pkgs = find_requirements()
        print(json.dumps({p.name: p.dict() for p in pkgs}))
        print(compat)
    """, _clean_env(PYTHONPATH=str(ROOT)), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    pkgs = json.loads(lines[-2])
    assert os.path.normcase(pkgs["PyFA"]["path"]) == os.path.normcase(str(PYFA_JL))
    assert pkgs["PyFA"]["dev"] is True
    assert pkgs["Flux"]["uuid"] == REGISTERED_UUIDS["Flux"]
    assert "1.10" in lines[-1]


# -- with Julia -----------------------------------------------------------------------------------

def _close(got: np.ndarray, want: np.ndarray, rtol: float) -> bool:
    return got.shape == want.shape and float(np.linalg.norm(got - want)) <= rtol * max(
        float(np.linalg.norm(want)), 1e-30)


def _assert_grads_close(got, want, rtol: float):
    assert abs(got.loss - want.loss) <= rtol * abs(want.loss)
    assert len(got.layers) == len(want.layers)
    for i, (g, w) in enumerate(zip(got.layers, want.layers, strict=True)):
        assert g.keys() == w.keys(), i
        for k in w:
            assert _close(g[k], w[k], rtol), f"layer {i} {k}"
    assert _close(got.input, want.input, rtol), "input"


def _problem(dtype, seed=0, sizes=(6, 8, 5, 3), activation="tanh", bias=True):
    layers = init_mlp(sizes, activation=activation, seed=seed, dtype=dtype, bias=bias)
    rng = np.random.default_rng(seed + 100)
    for p in layers:  # nonzero biases, so bias handling is really exercised
        if p.bias is not None:
            p.bias[...] = rng.normal(0, 0.1, p.bias.shape)
    x = rng.normal(size=(7, sizes[0])).astype(dtype)
    y = rng.normal(size=(7, sizes[-1])).astype(dtype)
    return layers, x, y


@pytest.mark.julia
@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_gradients_match_the_oracle(julia_or_skip, mode, dtype, rtol):  # noqa: F811
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(dtype)
    chain = JuliaChain.from_params(layers, mode=mode, dtype=dtype)
    got = chain.gradients(x, y)
    want = reference.chain_gradients(layers, x, y, mode)
    _assert_grads_close(got, want, rtol)
    assert got.input.shape == x.shape and got.input.flags.c_contiguous
    assert got.layers[0]["weight"].dtype == np.dtype(dtype)
    assert got.meta == {"backend": "julia", "mode": mode}
    if mode != "bp":  # the FA signal really differs from backprop's
        bp = reference.chain_gradients(layers, x, y, "bp")
        assert not _close(got.input, bp.input, 1e-2)
        assert not _close(got.layers[0]["weight"], bp.layers[0]["weight"], 1e-2)
        assert _close(got.layers[-1]["weight"], bp.layers[-1]["weight"], rtol)


@pytest.mark.julia
def test_brsf_redraws_but_keeps_true_top_gradient(julia_or_skip):  # noqa: F811
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64)
    chain = JuliaChain.from_params(layers, mode="brsf", dtype=np.float64)
    g1, g2 = chain.gradients(x, y), chain.gradients(x, y)
    bp = reference.chain_gradients(layers, x, y, "bp")
    assert _close(g1.layers[-1]["weight"], bp.layers[-1]["weight"], 1e-10)
    assert not _close(g1.input, g2.input, 1e-6)


@pytest.mark.julia
def test_forward_layout_and_no_bias(julia_or_skip):  # noqa: F811
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float32, bias=False, activation="relu")
    chain = JuliaChain.from_params(layers)
    out = chain.forward(x)
    assert out.shape == (7, 3) and out.flags.c_contiguous and out.dtype == np.float32
    assert _close(out, reference.chain_forward(layers, x), 1e-5)
    g = chain.gradients(x, y)
    assert all(set(d) == {"weight"} for d in g.layers)
    _assert_grads_close(g, reference.chain_gradients(layers, x, y, "fa"), 1e-4)
    # float64 data into a float32 chain is cast; integers too
    assert _close(chain.forward(x.astype(np.float64)), out, 1e-6)
    xi = np.round(3 * x).astype(np.int64)
    assert _close(chain.forward(xi), chain.forward(xi.astype(np.float32)), 1e-7)


@pytest.mark.julia
def test_training_step_and_params_round_trip(julia_or_skip):  # noqa: F811
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64)
    chain = JuliaChain.from_params(layers, mode="fa", dtype=np.float64)
    before = chain.to_params()
    for a, b in zip(before, layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.feedback, b.feedback)
        assert np.array_equal(a.bias, b.bias) and a.activation == b.activation
    with pytest.raises(RuntimeError, match="setup_optimiser"):
        chain.step(x, y)
    with pytest.raises(ValueError, match="unknown optimiser"):
        chain.setup_optimiser("rmsprop")

    lr = 0.1
    chain.setup_optimiser("sgd", lr=lr)
    want = reference.chain_gradients(layers, x, y, "fa")
    loss = chain.step(x, y)
    assert loss == pytest.approx(want.loss, rel=1e-10)
    after = chain.to_params()
    for p, a, g in zip(layers, after, want.layers, strict=True):
        assert np.allclose(a.weight, p.weight - lr * g["weight"], rtol=1e-10, atol=1e-12)
        assert np.allclose(a.bias, p.bias - lr * g["bias"], rtol=1e-10, atol=1e-12)
        assert np.array_equal(a.feedback, p.feedback)  # never trained
    after[0].weight[...] = 0  # to_params gives copies
    assert not np.all(chain.to_params()[0].weight == 0)

    chain.setup_optimiser("adam", lr=1e-2)
    losses = [chain.step(x, y) for _ in range(20)]
    assert losses[-1] < losses[0]
    assert all(np.array_equal(a.feedback, p.feedback)
               for a, p in zip(chain.to_params(), layers, strict=True))
    chain.setup_optimiser("momentum", lr=1e-2, momentum=0.5)
    assert np.isfinite(chain.step(x, y))


@pytest.mark.julia
def test_bad_input_leaves_the_model_unchanged(julia_or_skip):  # noqa: F811
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float32)
    chain = JuliaChain.from_params(layers)
    chain.setup_optimiser("sgd", lr=0.1)
    before = chain.to_params()
    with pytest.raises(ValueError, match=r"layer 0: x has 5 features"):
        chain.step(x[:, :5], y)
    with pytest.raises(ValueError, match=r"target y has shape \(7, 2\)"):
        chain.step(x, y[:, :2])
    with pytest.raises(TypeError, match="real numbers"):
        chain.gradients(x.astype(np.complex64), y)
    with pytest.raises(ValueError, match="2-d"):
        chain.forward(x[0])
    for a, b in zip(chain.to_params(), before, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert "JuliaChain(6-8-5-3, mode='fa'" in repr(chain)
