"""pyfa.julia: the juliacall bridge to the Julia package PyFA.

Tests marked `julia` run real Julia through juliacall and skip, with the reason, where it cannot
start. The others run everywhere: import lightness, the no-Julia path, juliapkg.json, and input
checks that must fire before Julia is touched.
"""

from __future__ import annotations

import json
import os
import re
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
    julia_ad_or_skip,
    julia_or_skip,
    read_project_toml,
)  # noqa: F401

from pyfa import reference
from pyfa.julia import _import
from pyfa.network import DenseParams, init_mlp
from pyfa.reference import ConvParams, Flatten, Pool2d


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON_JULIACALL_", "PYTHON_JULIAPKG_", "PYFA_JULIA_"))}
    env.pop("JULIA_NUM_THREADS", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _no_julia_env(tmp_path, **extra) -> dict:
    """A clean environment whose PATH holds no Julia (nor juliaup), and a juliapkg project of its
    own, so that whatever juliapkg would do happens in tmp_path."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return _clean_env(PATH=str(empty), PYTHON_JULIAPKG_PROJECT=str(tmp_path / "project"), **extra)


# What juliapkg's resolve is told, caught before it does anything (no Julia, no network needed):
# juliacall calls `juliapkg.resolve` first thing, so the stand-in raises there.
_CATCH_RESOLVE = """
    import json, os, sys
    import juliapkg
    from juliapkg.state import STATE
    seen = {}
    def resolve(*args, **kwargs):
        seen.update(offline=bool(STATE["offline"]), exe=STATE["override_executable"])
        raise RuntimeError("stopped before resolving")
    juliapkg.resolve = resolve
    import pyfa.julia as pj
    pj.available()
    print(json.dumps(seen))
"""


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


def test_nothing_is_downloaded_without_an_opt_in(tmp_path):
    """No Julia on PATH, no PYTHON_JULIAPKG_EXE, no PYFA_JULIA_INSTALL: juliapkg runs offline, so
    Julia is reported unavailable at once, naming the one command that installs it."""
    r = _run("""
        import sys
        import pyfa.julia as pj
        from juliapkg.state import STATE
        ok = pj.available()
        print(repr((ok, pj.unavailable_reason(), bool(STATE["offline"]), "torch" in sys.modules)))
    """, _no_julia_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ok, reason, offline, torch_loaded = eval(r.stdout.strip().splitlines()[-1])
    assert ok is False and offline is True
    assert "Querying Julia versions" not in r.stderr  # juliapkg's first step towards a download
    assert "no Julia is installed" in reason and "pyfa does not download one unless asked" in reason
    assert "`make julia`" in reason and "PYFA_JULIA_INSTALL=1" in reason
    assert not torch_loaded  # pyfa's Julia entry point imports juliacall, never torch


def test_download_policy():
    which_none, which_julia = (lambda _: None), (lambda _: "/opt/julia/bin/julia")
    p = _import.download_policy({}, which_none)
    assert p.offline and p.exe is None
    p = _import.download_policy({"PYFA_JULIA_INSTALL": "1"}, which_none)
    assert not p.offline and p.exe is None
    p = _import.download_policy({"PYTHON_JULIAPKG_OFFLINE": "no"}, which_none)  # yours: honoured
    assert p.offline is None and p.exe is None
    p = _import.download_policy({"PYTHON_JULIAPKG_EXE": "/my/julia"}, which_none)
    assert not p.offline and p.exe is None  # juliapkg uses your Julia, never another
    p = _import.download_policy({}, which_julia)
    assert not p.offline and p.exe == "/opt/julia/bin/julia"
    p = _import.download_policy({"PYFA_JULIA_INSTALL": "0"}, which_none)
    assert p.offline


@pytest.mark.parametrize("case", ["none", "opt-in", "julia-on-path", "user-offline"])
def test_what_juliapkg_is_told(tmp_path, case):
    extra = {"none": {}, "opt-in": {"PYFA_JULIA_INSTALL": "1"},
             "user-offline": {"PYTHON_JULIAPKG_OFFLINE": "yes"}, "julia-on-path": {}}[case]
    env = _no_julia_env(tmp_path, **extra)
    if case == "julia-on-path":
        fake = tmp_path / "empty-bin" / "julia"  # found by name only: never run
        fake.write_text("#!/bin/sh\nexit 1\n")
        fake.chmod(0o755)
    r = _run(_CATCH_RESOLVE, env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    want_offline = case in ("none", "user-offline")
    assert seen["offline"] is want_offline, seen
    if case == "julia-on-path":
        assert seen["exe"] == str(tmp_path / "empty-bin" / "julia")  # that Julia, not a download
    else:
        assert seen["exe"] is None


def test_install_after_a_failed_start_is_not_blocked_by_it(tmp_path):
    """available() without the opt-in fails offline; a later install() in the same process must
    go online (and here, without network or Julia, fail for that reason, not the cached one)."""
    code = _CATCH_RESOLVE.replace("    pj.available()\n", """    pj.available()
    seen["first"] = dict(seen)
    try:
        pj.install([])
    except pj.JuliaUnavailableError:
        pass
""")
    assert "install" in code
    r = _run(code, _no_julia_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["first"]["offline"] is True and seen["offline"] is False, seen


def test_julia_threads_and_signals_are_left_alone(tmp_path):
    r = _run("""
        import os
        import pyfa.julia as pj
        pj.available()
        print(repr({k: os.environ.get(k) for k in ("PYTHON_JULIACALL_THREADS",
              "PYTHON_JULIACALL_HANDLE_SIGNALS", "JULIA_NUM_THREADS")}))
    """, _no_julia_env(tmp_path, JULIA_NUM_THREADS="3"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert eval(r.stdout.strip().splitlines()[-1]) == {
        "PYTHON_JULIACALL_THREADS": None, "PYTHON_JULIACALL_HANDLE_SIGNALS": None,
        "JULIA_NUM_THREADS": "3"}


def test_juliacall_imported_by_someone_else_is_warned_about(tmp_path):
    """pyfa's settings cannot apply then; a juliacall that did not start Julia is an error."""
    r = _run("""
        import sys, types, warnings
        sys.modules["juliacall"] = types.ModuleType("juliacall")  # imported with INIT=no, say
        import pyfa.julia as pj
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ok = pj.available()
        print(repr((ok, [str(x.message) for x in w], pj.unavailable_reason())))
    """, _no_julia_env(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ok, warned, reason = eval(r.stdout.strip().splitlines()[-1])
    assert ok is False
    assert any("juliacall was imported before pyfa.julia" in m for m in warned), warned
    assert "without starting Julia" in reason


def test_explain_blames_openssl_not_the_network(monkeypatch):
    """With Python's OpenSSL < 3.5, juliapkg allows Julia <= 1.11 only: a Julia 1.12 then fails,
    whatever juliapkg's message, and the reason says so instead of blaming the network."""
    monkeypatch.setattr(_import, "openssl_caps_julia", lambda: True)
    monkeypatch.setattr(_import, "julia_version", lambda exe: (1, 12, 1))
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", "/opt/julia-1.12/bin/julia")
    err = RuntimeError("Unsatisfiable requirements detected for package OpenSSL_jll")
    msg = _import.explain(err)
    assert "1.12.1" in msg and "OpenSSL" in msg and "1.10 and 1.11 only" in msg
    assert "juliaup add 1.11" in msg and "network" not in msg.split("To install")[0]
    monkeypatch.setattr(_import, "openssl_caps_julia", lambda: False)
    assert "1.10 and 1.11 only" not in _import.explain(err)


def test_explain_offline_without_julia_names_the_opt_in(monkeypatch):
    monkeypatch.setattr(_import, "julia_version", lambda exe: None)
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    policy = _import.download_policy({}, lambda _: None)
    msg = _import.explain(Exception("could not find Julia ^1.10.3"), policy)
    assert msg.startswith("Julia is unavailable: no Julia is installed")
    assert "`make julia`" in msg and "python -m pyfa.julia install" in msg


@pytest.mark.parametrize("before", [None, b'{"packages": {"Foo": {"uuid": "x"}}}'])
def test_enable_gpu_without_julia_leaves_the_environment_as_it_was(tmp_path, before):
    project = tmp_path / "project"
    deps = project / "pyjuliapkg" / "juliapkg.json"
    if before is not None:
        deps.parent.mkdir(parents=True)
        deps.write_bytes(before)
    r = _run("""
        import pyfa.julia as pj
        try:
            pj.enable_gpu()
            print("no error")
        except pj.JuliaUnavailableError as e:
            print("raised:", str(e)[:80])
    """, _no_julia_env(tmp_path, PYTHON_JULIAPKG_EXE=str(tmp_path / "no-julia-here")), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("raised: Julia is unavailable")
    if before is None:
        assert not deps.exists(), deps.read_text()
    else:
        assert deps.read_bytes() == before


def test_ad_backend_names_are_checked_before_julia():
    import pyfa.julia as pj
    from pyfa.julia import JuliaChain

    assert pj.AD_BACKENDS == ("zygote", "enzyme", "mooncake")
    layers = init_mlp([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match=r"unknown AD backend 'tensorflow'; expected one of"):
        JuliaChain.from_params(layers, ad="tensorflow")
    with pytest.raises(ValueError, match="unknown AD backend"):
        pj.ad_unavailable_reason("Enzyme")  # names are lower case
    if not pj.available():  # then every backend says why Julia is unavailable, without raising
        assert pj.ad_unavailable_reason("enzyme") == pj.unavailable_reason()
        assert pj.ad_available("zygote") is False


def test_python_m_pyfa_julia_status_without_julia(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pyfa.julia", "status"], env=_no_julia_env(tmp_path),
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "download policy: no Julia installed" in r.stdout
    assert "make julia" in r.stderr


def test_makefile_julia_target_opts_in():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\njulia:", 1)[1].split("\n\n")[0]
    assert "-m pyfa.julia install" in recipe


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


def test_kp_dfa_and_cnn_specs_are_rejected_before_julia():
    """Modes, layer kinds, DFA matrices and dtypes are checked before Julia is started."""
    from pyfa.julia import CHAIN_MODES, CNN_MODES, JuliaChain, JuliaCNN

    assert CHAIN_MODES == ("fa", "bp", "usf", "brsf", "frsf", "kp", "dfa")
    assert CNN_MODES == ("fa", "bp", "usf", "brsf", "frsf", "kp", "dfa")
    with pytest.raises(ValueError, match="direct_feedback matrix"):
        JuliaChain.from_params(init_mlp([4, 3, 2], seed=0), mode="dfa")  # no DFA matrices
    cnn = reference.init_small_cnn(0)
    with pytest.raises(ValueError, match=r"direct_feedback matrix on every hidden conv/dense layer; "
                                         r"layers \[0, 2\] have none"):
        JuliaCNN.from_params(cnn, mode="dfa")
    with pytest.raises(ValueError, match="unknown mode 'kp!'"):
        JuliaCNN.from_params(cnn, mode="kp!")
    with pytest.raises(ValueError, match="layer 1: str is not a CNN layer"):
        JuliaCNN.from_params([cnn[0], "pool", *cnn[2:]])
    with pytest.raises(ValueError, match="non-empty list"):
        JuliaCNN.from_params([])
    mixed = reference.init_small_cnn(0, dtype=np.float64)
    mixed[-1] = cnn[-1]  # float32 dense on float64 convs
    with pytest.raises(TypeError, match="share one dtype"):
        JuliaCNN.from_params(mixed)
    with pytest.raises(TypeError, match="float32 or float64"):
        JuliaCNN.from_params(cnn, dtype=np.int32)
    with pytest.raises(ValueError, match="unknown AD backend"):
        JuliaCNN.from_params(cnn, ad="jax")


def test_cnn_dfa_specs_are_rejected_before_julia():
    """Mode "dfa" on a CNN: what the oracle needs of the spec (a conv or dense top without a DFA
    matrix, one on every hidden conv/dense layer, one C) is checked before Julia is started; the
    shapes that depend on the input, on the first input."""
    from pyfa.julia import JuliaCNN

    def spec():
        return reference.init_small_cnn(0, direct_feedback=True)

    no_top = spec()[:-1]                                   # ends with Flatten
    with pytest.raises(ValueError, match=r"needs a conv or dense top layer \(.*\); layer 4 is Flatten"):
        JuliaCNN.from_params(no_top, mode="dfa")
    top_b = spec()
    top_b[-1].direct_feedback = np.zeros((10, 10), np.float32)
    with pytest.raises(ValueError, match="layer 5: the top layer gets its true gradient"):
        JuliaCNN.from_params(top_b, mode="dfa")
    half = spec()
    half[2].direct_feedback = None
    with pytest.raises(ValueError, match=r"layers \[2\] have none"):
        JuliaCNN.from_params(half, mode="dfa")
    rows = spec()
    rows[0].direct_feedback = rows[0].direct_feedback[:9]  # C = 9, the top has 10 outputs
    with pytest.raises(ValueError, match=r"C = 10 rows .* layers \[0\] have \[9\]"):
        JuliaCNN.from_params(rows, mode="dfa")
    # a B_l that does not match its layer's output for this input: named on the first input
    short = spec()
    short[0].direct_feedback = short[0].direct_feedback[:, :, 1:, :]    # (10, 4, 11, 12)
    # (from_params would start Julia now: a model that holds no Julia model shows the check)
    cnn = JuliaCNN(None, short, "dfa", np.dtype(np.float32))
    with pytest.raises(ValueError, match=r"layer 0: direct_feedback has shape \(10, 4, 11, 12\), "
                                         r"needs \(C, \*output\) = \(10, 4, 12, 12\)"):
        cnn.gradients(np.zeros((2, 1, 12, 12), np.float32), np.zeros((2, 10), np.float32))


def _julia_array(literal: str) -> np.ndarray:
    """A Julia array literal of bridge.jl (`T[a, b]`, `T[a b; c d]`, `reshape(T[...], dims...)`)
    as a numpy array with Julia's indices: `a[i, j, ...]` here is Julia's `a[i+1, j+1, ...]`."""
    m = re.fullmatch(r"reshape\(T\[(.*)\],\s*([\d,\s]+)\)", literal.strip(), re.S)
    body = m.group(1) if m else re.fullmatch(r"T\[(.*)\]", literal.strip(), re.S).group(1)
    if ";" in body or ("," not in body and len(body.split()) > 1):
        values = np.array([[float(v) for v in row.split()] for row in body.split(";")])
    else:
        values = np.array([float(v) for v in body.split(",")])
    if not m:
        return values
    dims = tuple(int(d) for d in m.group(2).split(","))
    return values.ravel(order="F").reshape(dims, order="F")


def _bridge_literals(function: str) -> dict[str, np.ndarray]:
    """The array literals bound in `function` of bridge.jl: `name = lit`, `a, b = lit, lit`, and
    the entries of named tuples `group = (key = lit, ...)` as "group.key"."""
    text = (ROOT / "pyfa" / "julia" / "bridge.jl").read_text(encoding="utf-8")
    start = text.index(f"function {function}(")
    body = text[start:text.index("\nend\n", start)]
    lit = r"(?:reshape\(T\[[^\]]*\],\s*[\d,\s]+\)|T\[[^\]]*\])"
    token = re.compile(rf"(?P<group>[\w∂]+) = \((?=\s*[\w∂]+ = )"
                       rf"|(?P<a>[\w∂]+), (?P<b>[\w∂]+) = (?P<la>{lit}), (?P<lb>{lit})"
                       rf"|(?P<name>[\w∂]+) = (?P<lit>{lit})")
    out, group = {}, None
    for m in token.finditer(body):
        if m["group"]:
            group = m["group"]
        elif m["a"]:
            out[m["a"]], out[m["b"]] = _julia_array(m["la"]), _julia_array(m["lb"])
        else:
            out[f"{group}.{m['name']}" if group else m["name"]] = _julia_array(m["lit"])
    return out


def test_julia_literal_reader():
    assert np.array_equal(_julia_array("T[1 2; 3 4]"), [[1, 2], [3, 4]])
    assert np.array_equal(_julia_array("T[1, -2]"), [1, -2])
    a = _julia_array("reshape(T[1, 2, 3, 4, 5, 6], 2, 3)")       # column-major
    assert a.shape == (2, 3) and a[1, 0] == 2 and a[0, 1] == 3
    b = _julia_array("reshape(T[1 2 3; 4 5 6; 7 8 9], 3, 3, 1, 1)")
    assert b.shape == (3, 3, 1, 1) and b[0, 1, 0, 0] == 2 and b[1, 0, 0, 0] == 4


def test_check_fa_cases_are_the_oracles():
    """bridge.jl's `check_fa` refuses an AD backend unless its conv and DFA gradients are the
    literal values written there: those values are the numpy oracle's for the same arrays (each
    Julia array is the numpy one crossed as `a.T`; dense matrices and DFA's (C, units) matrix as
    they are), the FA (DFA) and backprop answers differ, and the message's FA and BP values are
    right too."""
    from pyfa.reference.conv import conv_backward

    c = _bridge_literals("_check_conv")
    assert {"x", "W", "B", "C", "fa", "bp", "∂W"} <= set(c)
    conv = ConvParams(c["W"].T.copy(), c["B"].T.copy(), None)
    for mode in ("fa", "bp"):
        grads, dx = conv_backward(conv, c["x"].T, c["C"].T, mode)
        assert np.array_equal(dx, c[mode].T), mode                 # ∂x of Σ C ⊙ conv(x)
        assert np.array_equal(grads["weight"], c["∂W"].T)
    assert not np.array_equal(c["fa"], c["bp"])

    d = _bridge_literals("_check_dfa")
    layers = [ConvParams(d["W1"].T.copy(), d["F1"].T.copy(), None),
              ConvParams(d["W2"].T.copy(), d["F2"].T.copy(), None), Flatten(),
              DenseParams(d["W3"], d["F3"], None), DenseParams(d["W4"], d["F4"], None)]
    x = d["x"].T.copy()                                             # NCHW (1, 1, 4, 4)
    shapes = reference.check_cnn(layers, x.shape)
    start = 0
    for i in (0, 1, 3):                                             # B_l: the columns of D, in order
        units = int(np.prod(shapes[i]))
        layers[i].direct_feedback = d["D"][:, start:start + units].reshape((-1,) + shapes[i])
        start += units
    assert start == d["D"].shape[1]
    e = d["C"].T                                                    # ∂L/∂ŷ, (N, C)
    yhat = reference.cnn_forward(layers, x)
    y = yhat - e * yhat.size / 2                 # the oracle's mse then has ∂L/∂ŷ = 2(ŷ - y)/n = e
    got = {mode: reference.cnn_gradients(layers, x, y, mode) for mode in ("dfa", "fa", "bp")}
    for mode, g in got.items():
        assert np.array_equal(g.layers[0]["weight"], d[f"{mode}.W1"].T), mode
        assert np.array_equal(g.input, d[f"{mode}.x"].T), mode
    dfa = got["dfa"].layers
    assert np.array_equal(dfa[1]["weight"], d["dfa.W2"].T)
    assert np.array_equal(dfa[3]["weight"], d["dfa.W3"]) and np.array_equal(dfa[4]["weight"], d["dfa.W4"])
    for other in ("fa", "bp"):                                       # the case tells them apart
        assert not np.array_equal(d["dfa.W1"], d[f"{other}.W1"])
        assert not np.array_equal(d["dfa.x"], d[f"{other}.x"])
    assert not np.array_equal(d["fa.x"], d["bp.x"])


def test_data_loss_and_optimiser_are_checked_before_julia():
    """A model's checks of x, y, the loss and the optimiser run before any call into Julia: here,
    without Julia, a model object that holds no Julia model at all (None) raises the input error,
    never JuliaUnavailableError; where Julia runs, the model is left as it was."""
    from pyfa.julia import JuliaChain, JuliaCNN

    layers = init_mlp([4, 3, 2], seed=0)
    chain = JuliaChain(None, layers, "fa", np.dtype(np.float32))
    x = np.zeros((5, 4), np.float32)
    y = reference.one_hot(np.arange(5) % 2, 2)
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        chain.gradients(x, y, loss="l1")
    with pytest.raises(ValueError, match="loss 'ce' needs probability targets"):
        chain.gradients(x, y - 0.5, loss="ce")
    with pytest.raises(ValueError, match=r"layer 0: x has 3 features"):
        chain.gradients(x[:, :3], y, loss="ce")
    with pytest.raises(ValueError, match=r"target y has shape \(5, 3\)"):
        chain.gradients(x, np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        chain.setup_optimiser("sgd", lr=0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="unknown optimiser"):
        chain.setup_optimiser("lbfgs")
    cnn = JuliaCNN(None, reference.init_small_cnn(0), "fa", np.dtype(np.float32))
    xc = np.zeros((2, 1, 12, 12), np.float32)
    with pytest.raises(ValueError, match=r"layer 0 \(conv\): takes \(in_ch=1, H, W\)"):
        cnn.gradients(np.zeros((2, 3, 12, 12), np.float32), np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match=r"target y has shape \(2, 9\); the network gives \(2, 10\)"):
        cnn.gradients(xc, np.zeros((2, 9), np.float32))
    with pytest.raises(TypeError, match="real numbers"):
        cnn.forward(xc.astype(np.complex64))
    with pytest.raises(RuntimeError, match="setup_optimiser"):
        cnn.step(xc, np.zeros((2, 10), np.float32))


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
    assert project["compat"]["Flux"] == pkgs["Flux"]["version"] == "0.16.8"  # AutoEnzyme() etc.
    for name, uuid in project["weakdeps"].items():  # the AD backends, each with its extension
        assert uuid == REGISTERED_UUIDS[name], f"[weakdeps] {name}"
        assert project["extensions"][f"PyFA{name}Ext"] == name
    assert set(project["targets"]["test"]) == {"ChainRulesTestUtils", "Pkg", "Test"}
    assert (pyfa_dir / "src" / "PyFA.jl").is_file()
    assert (pyfa_dir / "test" / "runtests.jl").is_file()


def test_optional_package_uuids_are_the_registered_ones():
    from pyfa.julia import AD_PACKAGES, JULIA_UUIDS

    assert JULIA_UUIDS == {k: REGISTERED_UUIDS[k] for k in ("CUDA", "cuDNN", "Enzyme", "Mooncake")}
    project = read_project_toml((PYFA_JL / "Project.toml").read_text())
    for name, version in AD_PACKAGES.values():  # the bridge installs what PyFA's compat allows
        assert project["compat"][name] == version


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


def _problem(dtype, seed=0, sizes=(6, 8, 5, 3), activation="tanh", bias=True, loss="mse",
             direct_feedback=False):
    layers = init_mlp(sizes, activation=activation, seed=seed, dtype=dtype, bias=bias,
                      direct_feedback=direct_feedback)
    rng = np.random.default_rng(seed + 100)
    for p in layers:  # nonzero biases, so bias handling is really exercised
        if p.bias is not None:
            p.bias[...] = rng.normal(0, 0.1, p.bias.shape)
    x = rng.normal(size=(7, sizes[0])).astype(dtype)
    y = _targets(rng, (7, sizes[-1]), loss, dtype)
    return layers, x, y


def _targets(rng, shape, loss, dtype):
    """N(0, 1) targets for mse; one-hot rows of random classes for ce."""
    if loss == "ce":
        return reference.one_hot(rng.integers(0, shape[1], shape[0]), shape[1], dtype)
    return rng.normal(size=shape).astype(dtype)


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
    assert got.meta == {"backend": "julia", "mode": mode, "ad": "zygote", "loss": "mse"}
    if mode != "bp":  # the FA signal really differs from backprop's
        bp = reference.chain_gradients(layers, x, y, "bp")
        assert not _close(got.input, bp.input, 1e-2)
        assert not _close(got.layers[0]["weight"], bp.layers[0]["weight"], 1e-2)
        assert _close(got.layers[-1]["weight"], bp.layers[-1]["weight"], rtol)


@pytest.mark.julia
@pytest.mark.parametrize("ad", ["zygote", "enzyme", "mooncake"])
@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_every_ad_backend_gives_the_oracles_fa_gradients(ad, mode, dtype, rtol):
    """Zygote, Enzyme and Mooncake through Flux: each gives the numpy oracle's gradients, which
    (but for mode bp) differ from backprop's."""
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(dtype, seed=3)
    chain = JuliaChain.from_params(layers, mode=mode, dtype=dtype, ad=ad)
    got = chain.gradients(x, y)
    assert got.meta == {"backend": "julia", "mode": mode, "ad": ad, "loss": "mse"}
    _assert_grads_close(got, reference.chain_gradients(layers, x, y, mode), rtol)
    if mode != "bp":
        bp = reference.chain_gradients(layers, x, y, "bp")
        assert not _close(got.input, bp.input, 1e-2)
        assert not _close(got.layers[0]["weight"], bp.layers[0]["weight"], 1e-2)
    # the same backend asked for per call, on a Zygote chain
    zchain = JuliaChain.from_params(layers, mode=mode, dtype=dtype)
    _assert_grads_close(zchain.gradients(x, y, ad=ad), got, rtol)


@pytest.mark.julia
@pytest.mark.parametrize("ad", ["zygote", "enzyme", "mooncake"])
def test_every_ad_backend_trains_with_fa_and_keeps_feedback(ad):
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64, seed=4)
    chain = JuliaChain.from_params(layers, mode="fa", dtype=np.float64, ad=ad)
    lr = 0.1
    chain.setup_optimiser("sgd", lr=lr)
    want = reference.chain_gradients(layers, x, y, "fa")
    assert chain.step(x, y) == pytest.approx(want.loss, rel=1e-10)
    for p, a, g in zip(layers, chain.to_params(), want.layers, strict=True):
        assert np.allclose(a.weight, p.weight - lr * g["weight"], rtol=1e-10, atol=1e-12)
        assert np.allclose(a.bias, p.bias - lr * g["bias"], rtol=1e-10, atol=1e-12)
        assert np.array_equal(a.feedback, p.feedback)


@pytest.mark.julia
@pytest.mark.parametrize("ad", ["enzyme", "mooncake"])
def test_brsf_under_other_ad_backends(ad):
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64)
    chain = JuliaChain.from_params(layers, mode="brsf", dtype=np.float64, ad=ad)
    g1, g2 = chain.gradients(x, y), chain.gradients(x, y)
    bp = reference.chain_gradients(layers, x, y, "bp")
    assert _close(g1.layers[-1]["weight"], bp.layers[-1]["weight"], 1e-10)
    assert not _close(g1.input, g2.input, 1e-6)  # R redrawn on each backward pass
    assert not _close(g1.input, bp.input, 1e-2)


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
    assert "JuliaChain(6-8-5-3, mode='fa'" in repr(chain) and "ad='zygote'" in repr(chain)
    with pytest.raises(ValueError, match="unknown AD backend"):
        chain.gradients(x, y, ad="jax")


# -- with Julia: KP, DFA, cross-entropy, CNNs ------------------------------------------------------

AD_NAMES = ["zygote", "enzyme", "mooncake"]


@pytest.mark.julia
@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf", "kp", "dfa"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_every_mode_and_loss_matches_the_oracle(julia_or_skip, mode, loss, dtype, rtol):  # noqa: F811
    """The call the cross-check makes: JuliaChain.from_params(...).gradients(x, y, loss=loss)."""
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(dtype, seed=11, loss=loss, direct_feedback=True)
    got = JuliaChain.from_params(layers, mode=mode, dtype=dtype, ad="zygote").gradients(x, y, loss=loss)
    want = reference.chain_gradients(layers, x, y, mode, loss=loss)
    _assert_grads_close(got, want, rtol)
    assert got.meta == {"backend": "julia", "mode": mode, "ad": "zygote", "loss": loss}
    if mode == "kp":
        assert all(np.array_equal(g["feedback"], g["weight"]) for g in got.layers)
    if mode != "bp":  # the rule's signal differs from backprop's, and DFA's from FA's too
        others = ["bp"] + (["fa"] if mode == "dfa" else [])
        for other in others:
            ref = reference.chain_gradients(layers, x, y, other, loss=loss)
            assert not _close(got.input, ref.input, 1e-2), other
            assert not _close(got.layers[0]["weight"], ref.layers[0]["weight"], 1e-2), other
        assert _close(got.layers[-1]["weight"],
                      reference.chain_gradients(layers, x, y, "bp", loss=loss).layers[-1]["weight"],
                      rtol)


@pytest.mark.julia
@pytest.mark.parametrize("ad", AD_NAMES)
@pytest.mark.parametrize("mode", ["kp", "dfa"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_kp_and_dfa_under_every_ad_backend(ad, mode, dtype, rtol):
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(dtype, seed=12, loss="ce", direct_feedback=True)
    got = JuliaChain.from_params(layers, mode=mode, dtype=dtype, ad=ad).gradients(x, y, loss="ce")
    assert got.meta["ad"] == ad
    _assert_grads_close(got, reference.chain_gradients(layers, x, y, mode, loss="ce"), rtol)


@pytest.mark.julia
def test_dfa_two_layers_with_the_top_feedback_is_fa(julia_or_skip):  # noqa: F811
    """The oracle's identity, through Julia: two layers whose B_0 is the top layer's feedback."""
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64, seed=13, sizes=(6, 8, 3), direct_feedback=True)
    layers[0].direct_feedback = layers[1].feedback.copy()
    dfa = JuliaChain.from_params(layers, mode="dfa", dtype=np.float64).gradients(x, y)
    fa = JuliaChain.from_params(layers, mode="fa", dtype=np.float64).gradients(x, y)
    _assert_grads_close(dfa, fa, 1e-10)


@pytest.mark.julia
@pytest.mark.parametrize("ad", AD_NAMES)
def test_kp_sgd_with_weight_decay_is_the_oracles_step(ad):
    """W ← W − η(∂W + λW), B ← B − η(∂W + λB), b ← b − η∂b: so W − B shrinks by (1 − ηλ)."""
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64, seed=14)
    chain = JuliaChain.from_params(layers, mode="kp", dtype=np.float64, ad=ad)
    lr, wd = 0.1, 0.05
    chain.setup_optimiser("sgd", lr=lr, weight_decay=wd)
    for _ in range(2):
        before = chain.to_params()
        grads = reference.chain_gradients(before, x, y, "kp")
        want = reference.sgd_step(before, grads, lr, weight_decay=wd)
        assert chain.step(x, y) == pytest.approx(grads.loss, rel=1e-10)
        for a, w, p in zip(chain.to_params(), want, before, strict=True):
            for k in ("weight", "feedback", "bias"):
                assert np.allclose(getattr(a, k), getattr(w, k), rtol=1e-10, atol=1e-12), k
            assert np.allclose(a.weight - a.feedback, (1 - lr * wd) * (p.weight - p.feedback),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.julia
def test_weight_decay_leaves_fixed_feedback_and_dfa_matrices_alone(julia_or_skip):  # noqa: F811
    from pyfa.julia import JuliaChain

    layers, x, y = _problem(np.float64, seed=15, loss="ce", direct_feedback=True)
    for mode in ("fa", "dfa"):
        chain = JuliaChain.from_params(layers, mode=mode, dtype=np.float64)
        lr, wd = 0.1, 0.05
        chain.setup_optimiser("sgd", lr=lr, weight_decay=wd)
        grads = reference.chain_gradients(layers, x, y, mode, loss="ce")
        chain.step(x, y, loss="ce")
        want = reference.sgd_step(layers, grads, lr, weight_decay=wd)
        after = chain.to_params()
        for a, w, p in zip(after, want, layers, strict=True):
            assert np.allclose(a.weight, w.weight, rtol=1e-10, atol=1e-12)
            assert np.allclose(a.bias, w.bias, rtol=1e-10, atol=1e-12)  # no decay on biases
            assert np.array_equal(a.feedback, p.feedback)
        if mode == "dfa":
            for a, p in zip(after[:-1], layers[:-1], strict=True):
                assert np.array_equal(a.direct_feedback, p.direct_feedback)
            assert after[-1].direct_feedback is None
    kp = JuliaChain.from_params(layers, mode="kp", dtype=np.float64)
    kp.setup_optimiser("adam", lr=1e-2, weight_decay=0.01)  # AdamW
    losses = [kp.step(x, y, loss="ce") for _ in range(15)]
    assert losses[-1] < losses[0]
    assert not np.array_equal(kp.to_params()[0].feedback, layers[0].feedback)


def _cnn_problem(dtype, seed=0, loss="mse", batch=5, direct_feedback=False):
    """`init_small_cnn` (avg pooling: no max-pool ties), nonzero biases, x (N, 1, 12, 12)."""
    layers = reference.init_small_cnn(seed, pool="avg", dtype=dtype, direct_feedback=direct_feedback)
    rng = np.random.default_rng(seed + 100)
    for p in layers:
        if isinstance(p, (ConvParams, DenseParams)):
            p.bias[...] = rng.normal(0, 0.1, p.bias.shape)
    x = rng.normal(size=(batch, 1, 12, 12)).astype(dtype)
    return layers, x, _targets(rng, (batch, 10), loss, dtype)


def _odd_cnn_problem(dtype, seed=0, pool="avg"):
    """Every (h, w) pair different (kernel, stride, padding, dilation, pool window) and groups = 2,
    so that a swapped axis anywhere in the NCHW <-> WHCN crossing shows."""
    rng = np.random.default_rng(seed)
    conv = reference.init_conv(2, 4, (3, 2), rng=rng, stride=(2, 1), padding=(1, 0),
                               dilation=(1, 2), groups=2, activation="tanh", dtype=dtype)
    layers = [conv, Pool2d(pool, (2, 3)), Flatten()]
    n_in = reference.check_cnn(layers, (1, 2, 9, 8))[-1][0]
    a = np.sqrt(6 / (n_in + 3))
    layers.append(DenseParams(rng.uniform(-a, a, (3, n_in)).astype(dtype),
                              rng.uniform(-a, a, (3, n_in)).astype(dtype),
                              rng.normal(0, 0.1, 3).astype(dtype)))
    conv.bias[...] = rng.normal(0, 0.1, conv.bias.shape)
    x = rng.normal(size=(4, 2, 9, 8)).astype(dtype)
    return layers, x, rng.normal(size=(4, 3)).astype(dtype)


@pytest.mark.julia
@pytest.mark.parametrize("mode", ["fa", "bp", "usf", "frsf", "kp"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_small_cnn_matches_the_oracle(julia_or_skip, mode, loss, dtype, rtol):  # noqa: F811
    """conv-relu-avgpool-conv-relu-avgpool-flatten-dense: the oracle's gradients, in its layout."""
    from pyfa.julia import JuliaCNN

    layers, x, y = _cnn_problem(dtype, seed=16, loss=loss)
    cnn = JuliaCNN.from_params(layers, mode=mode, dtype=dtype)
    out = cnn.forward(x)
    assert out.shape == (5, 10) and out.flags.c_contiguous
    assert _close(out, reference.cnn_forward(layers, x), rtol)
    got = cnn.gradients(x, y, loss=loss)
    want = reference.cnn_gradients(layers, x, y, mode, loss=loss)
    _assert_grads_close(got, want, rtol)
    assert [set(g) for g in got.layers[1:5:2]] == [set(), set()]        # the pools
    assert got.layers[0]["weight"].shape == layers[0].weight.shape      # (O, C/g, kh, kw)
    assert got.input.shape == x.shape and got.input.flags.c_contiguous   # NCHW
    assert got.meta == {"backend": "julia", "mode": mode, "ad": "zygote", "loss": loss}
    if mode != "bp":
        bp = reference.cnn_gradients(layers, x, y, "bp", loss=loss)
        assert not _close(got.input, bp.input, 1e-2)
        assert not _close(got.layers[0]["weight"], bp.layers[0]["weight"], 1e-2)
        assert _close(got.layers[-1]["weight"], bp.layers[-1]["weight"], rtol)


@pytest.mark.julia
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("mode", ["fa", "bp", "kp"])
def test_cnn_layout_crossing_with_odd_shapes(julia_or_skip, pool, mode):  # noqa: F811
    """Non-square kernel, stride, padding, dilation and pool window, and groups: the oracle's
    numbers, so no axis is swapped and no kernel flipped on the way (max pool: random inputs, no
    ties)."""
    from pyfa.julia import JuliaCNN

    layers, x, y = _odd_cnn_problem(np.float64, seed=17, pool=pool)
    cnn = JuliaCNN.from_params(layers, mode=mode, dtype=np.float64)
    assert _close(cnn.forward(x), reference.cnn_forward(layers, x), 1e-10)
    _assert_grads_close(cnn.gradients(x, y), reference.cnn_gradients(layers, x, y, mode), 1e-10)
    for a, p in zip(cnn.to_params(), layers, strict=True):  # the round trip is exact
        if isinstance(p, (ConvParams, DenseParams)):
            assert np.array_equal(a.weight, p.weight) and np.array_equal(a.feedback, p.feedback)
            assert np.array_equal(a.bias, p.bias)
        else:
            assert a == p
    assert "JuliaCNN(conv-" + pool + "pool-flatten-dense, mode=" in repr(cnn)


@pytest.mark.julia
@pytest.mark.parametrize("ad", AD_NAMES)
@pytest.mark.parametrize("mode", ["fa", "kp"])
def test_small_cnn_under_every_ad_backend(ad, mode):
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaCNN

    layers, x, y = _cnn_problem(np.float64, seed=18, loss="ce")
    got = JuliaCNN.from_params(layers, mode=mode, dtype=np.float64, ad=ad).gradients(x, y, loss="ce")
    assert got.meta["ad"] == ad
    _assert_grads_close(got, reference.cnn_gradients(layers, x, y, mode, loss="ce"), 1e-10)


@pytest.mark.julia
def test_small_cnn_sgd_step_is_the_oracles(julia_or_skip):  # noqa: F811
    from pyfa.julia import JuliaCNN

    layers, x, y = _cnn_problem(np.float64, seed=19, loss="ce")
    cnn = JuliaCNN.from_params(layers, mode="kp", dtype=np.float64)
    lr, wd = 0.05, 0.1
    cnn.setup_optimiser("sgd", lr=lr, weight_decay=wd)
    grads = reference.cnn_gradients(layers, x, y, "kp", loss="ce")
    assert cnn.step(x, y, loss="ce") == pytest.approx(grads.loss, rel=1e-10)
    want = reference.sgd_step(layers, grads, lr, weight_decay=wd)
    for a, w in zip(cnn.to_params(), want, strict=True):
        if isinstance(w, (ConvParams, DenseParams)):
            for k in ("weight", "feedback", "bias"):
                assert np.allclose(getattr(a, k), getattr(w, k), rtol=1e-10, atol=1e-12), k


# -- with Julia: DFA in a CNN ----------------------------------------------------------------------

@pytest.mark.julia
def test_check_fa_passes_under_zygote_case_by_case(julia_or_skip):  # noqa: F811
    """The bridge's load-time proof, run directly: under Zygote (which applies PyFA's
    ChainRulesCore rules itself) every case of `check_fa` gives the rule's answer, in both
    element types; so a backend refused by it is refused for its own answers, not the cases'."""
    bridge = julia_or_skip.PyFABridge
    backend = bridge.adtype("zygote")
    for check in ("_check_matmul", "_check_conv", "_check_dfa"):
        for T in ("Float32", "Float64"):
            assert getattr(bridge, check)("zygote", backend, julia_or_skip.seval(T)) is None, (check, T)
    assert bridge.check_fa("zygote") is None
    import pyfa.julia as pj
    assert pj.ad_unavailable_reason("zygote") is None


def _odd_cnn_dfa_problem(dtype, seed=0, pool="avg", conv_top=False):
    """`_odd_cnn_problem` with DFA matrices (every (h, w) pair different, groups = 2), or with a
    conv top layer instead of flatten-dense (then C = the top's out_ch·H·W outputs per sample)."""
    layers, x, y = _odd_cnn_problem(dtype, seed=seed, pool=pool)
    rng = np.random.default_rng(seed + 1)
    if conv_top:
        top = reference.init_conv(4, 2, (2, 1), rng=rng, padding=(0, 1), dtype=dtype)
        top.bias[...] = rng.normal(0, 0.1, top.bias.shape)
        layers = layers[:2] + [top]
    shapes = reference.check_cnn(layers, x.shape)
    c = int(np.prod(shapes[-1]))
    for i, p in enumerate(layers[:-1]):
        if isinstance(p, (ConvParams, DenseParams)):
            p.direct_feedback = rng.uniform(-0.5, 0.5, (c,) + shapes[i]).astype(dtype)
    y = rng.normal(size=(x.shape[0],) + shapes[-1]).astype(dtype)
    return layers, x, y


@pytest.mark.julia
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_small_cnn_dfa_matches_the_oracle(julia_or_skip, loss, dtype, rtol):  # noqa: F811
    """The cross-check's call, JuliaCNN.from_params(specs, mode="dfa", ...).gradients(x, y,
    loss=loss): conv-relu-avgpool-conv-relu-avgpool-flatten-dense, each conv's B_l of shape
    (C, out_ch, H_out, W_out) entering right after its relu, before the pool."""
    from pyfa.julia import JuliaCNN

    layers, x, y = _cnn_problem(dtype, seed=20, loss=loss, direct_feedback=True)
    cnn = JuliaCNN.from_params(layers, mode="dfa", dtype=dtype, ad="zygote")
    assert _close(cnn.forward(x), reference.cnn_forward(layers, x), rtol)
    got = cnn.gradients(x, y, loss=loss)
    want = reference.cnn_gradients(layers, x, y, "dfa", loss=loss)
    _assert_grads_close(got, want, rtol)
    assert got.meta == {"backend": "julia", "mode": "dfa", "ad": "zygote", "loss": loss}
    for other in ("fa", "bp"):  # DFA's signal is neither FA's nor backprop's
        ref = reference.cnn_gradients(layers, x, y, other, loss=loss)
        assert not _close(got.input, ref.input, 1e-2), other
        assert not _close(got.layers[0]["weight"], ref.layers[0]["weight"], 1e-2), other
    bp = reference.cnn_gradients(layers, x, y, "bp", loss=loss)
    assert _close(got.layers[-1]["weight"], bp.layers[-1]["weight"], rtol)  # the top: true gradient
    for a, p in zip(cnn.to_params(), layers, strict=True):   # the DFA matrices come back as they went
        if isinstance(p, (ConvParams, DenseParams)):
            if p.direct_feedback is None:
                assert a.direct_feedback is None
            else:
                assert np.array_equal(a.direct_feedback, p.direct_feedback.astype(dtype))
    assert "mode='dfa'" in repr(cnn)


@pytest.mark.julia
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("conv_top", [False, True])
def test_cnn_dfa_layout_crossing_with_odd_shapes(julia_or_skip, pool, conv_top):  # noqa: F811
    """Non-square kernel, stride, padding, dilation and pool window, groups, and a conv top layer
    (whose C counts out_ch·H·W outputs in the oracle's C order): the oracle's DFA gradients, so
    e·B_l lands on the right WHCN entries."""
    from pyfa.julia import JuliaCNN

    layers, x, y = _odd_cnn_dfa_problem(np.float64, seed=22, pool=pool, conv_top=conv_top)
    cnn = JuliaCNN.from_params(layers, mode="dfa", dtype=np.float64)
    assert _close(cnn.forward(x), reference.cnn_forward(layers, x), 1e-10)
    want = reference.cnn_gradients(layers, x, y, "dfa")
    _assert_grads_close(cnn.gradients(x, y), want, 1e-10)
    # a B_l with its units in another order gives other gradients: the check can tell
    swapped = [p.copy() if isinstance(p, (ConvParams, DenseParams)) else p for p in layers]
    swapped[0].direct_feedback = np.ascontiguousarray(np.swapaxes(swapped[0].direct_feedback, -1, -2)
                                                      ).reshape(swapped[0].direct_feedback.shape)
    assert not _close(reference.cnn_gradients(swapped, x, y, "dfa").layers[0]["weight"],
                      want.layers[0]["weight"], 1e-3)


@pytest.mark.julia
@pytest.mark.parametrize("ad", AD_NAMES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_small_cnn_dfa_under_every_ad_backend(ad, dtype, rtol):
    julia_ad_or_skip(ad)
    from pyfa.julia import JuliaCNN

    layers, x, y = _cnn_problem(dtype, seed=23, loss="ce", direct_feedback=True)
    got = JuliaCNN.from_params(layers, mode="dfa", dtype=dtype, ad=ad).gradients(x, y, loss="ce")
    assert got.meta["ad"] == ad
    _assert_grads_close(got, reference.cnn_gradients(layers, x, y, "dfa", loss="ce"), rtol)


@pytest.mark.julia
def test_small_cnn_dfa_sgd_step_is_the_oracles(julia_or_skip):  # noqa: F811
    """A DFA training step: weights and biases move by the oracle's DFA gradients; feedback and DFA
    matrices stay (weight decay included)."""
    from pyfa.julia import JuliaCNN

    layers, x, y = _cnn_problem(np.float64, seed=24, loss="ce", direct_feedback=True)
    cnn = JuliaCNN.from_params(layers, mode="dfa", dtype=np.float64)
    lr, wd = 0.05, 0.1
    cnn.setup_optimiser("sgd", lr=lr, weight_decay=wd)
    grads = reference.cnn_gradients(layers, x, y, "dfa", loss="ce")
    assert cnn.step(x, y, loss="ce") == pytest.approx(grads.loss, rel=1e-10)
    want = reference.sgd_step(layers, grads, lr, weight_decay=wd)
    for a, w, p in zip(cnn.to_params(), want, layers, strict=True):
        if isinstance(w, (ConvParams, DenseParams)):
            for k in ("weight", "bias"):
                assert np.allclose(getattr(a, k), getattr(w, k), rtol=1e-10, atol=1e-12), k
            assert np.array_equal(a.feedback, p.feedback)
            if p.direct_feedback is not None:
                assert np.array_equal(a.direct_feedback, p.direct_feedback)
