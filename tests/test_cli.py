"""The `pyfa` command and the package's import weight."""

import subprocess
import sys

import pytest

from pyfa import cli


def test_import_pyfa_and_cli_stay_light():
    code = (
        "import sys, pyfa, pyfa.cli, pyfa.reference, pyfa.crosscheck, pyfa.train, pyfa.train.loop, "
        "pyfa.train.rundir, pyfa.data, pyfa.checkpoint; pyfa.cli.build_parser(); "
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


def test_top_level_help_says_what_pyfa_does_and_the_exit_status(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Feedback Alignment" in out and "backprop" in out and "pyfa demo" in out
    assert "sub-command per module" not in out  # the implementation, not what a user gets
    assert "exit status:" in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_help_states_its_exit_status(capsys, command):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    status = out[out.index("exit status:"):]
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {code}" in status, (command, status)


@pytest.mark.parametrize("argv", [["forum", "--seed", "-3"], ["forum", "--seed", str(2**64)],
                                  ["train", "--seed", "-1"], ["train", "--seed", str(2**63)],
                                  ["train", "--seed", "x"]])
def test_a_bad_seed_is_refused_naming_seed(capsys, argv):
    """`pyfa forum --seed -3` crashed with a traceback; `--seed -1` gave numpy's wording."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: must be a whole number from 0 to 2**63 - 1" in err
    assert "Traceback" not in err


def test_demo_epochs_0_is_refused_before_the_cross_check(capsys, monkeypatch):
    import pyfa.crosscheck

    monkeypatch.setattr(pyfa.crosscheck, "crosscheck", lambda *a, **k: pytest.fail("cross-check ran"))
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--epochs", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "pyfa demo: error: argument --epochs: must be a whole number >= 1, got '0'" in err
    assert cli.main(["demo", "--out", ""]) == 2
    assert "--out '' names no folder" in capsys.readouterr().err


def test_ctrl_c_in_any_command_is_one_line_and_status_130(capsys, monkeypatch):
    import pyfa.forum

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyfa.forum, "run", interrupted)
    try:
        rc = cli.main(["forum"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped from pyfa.cli.main (a traceback for the user)")
    assert rc == 130
    assert capsys.readouterr().err == "pyfa forum: interrupted\n"


def test_the_package_is_typed():
    from importlib.resources import files

    assert files("pyfa").joinpath("py.typed").is_file()
