"""The `pyfa` command and the package's import weight."""

import subprocess
import sys

import pytest

from pyfa import cli


def test_import_pyfa_and_cli_stay_light():
    code = (
        "import sys, pyfa, pyfa.cli, pyfa.reference, pyfa.crosscheck; pyfa.cli.build_parser(); "
        "heavy = [m for m in ('torch', 'juliacall', 'juliapkg', 'matplotlib', 'sklearn') "
        "if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_forum_command_reproduces_bug_and_fix(capsys):
    code = cli.main(["forum"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bug: forum_bug.jl: PFA001" in out
    assert "fix: forum_fix.jl: no findings" in out
    assert "torch LinearFA (the port)                 FA used             FA used             ok" in out
    assert "torch nn.Linear (plain backprop)          backprop            backprop            ok" in out
    assert "UNEXPECTED" not in out


def test_forum_problem_is_the_posts_shapes():
    from pyfa.forum import forum_problem

    layers, x, y = forum_problem()
    assert [p.weight.shape for p in layers] == [(60, 50), (40, 60), (2, 40)]
    assert x.shape == (64, 50) and y.shape == (64, 2)


def test_demo_refuses_a_folder_of_someone_elses_files(tmp_path, capsys, monkeypatch):
    import pyfa.crosscheck

    monkeypatch.setattr(pyfa.crosscheck, "crosscheck", lambda *a, **k: pytest.fail("ran"))
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["demo", "--out", str(tmp_path)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
