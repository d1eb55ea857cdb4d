"""The safety net of ``sptycho`` (services/cli.py main): unexpected errors are one line with
a log file (or the traceback with --debug), usage errors are one line, and pyepics' missing
caRepeater banner is gone."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import recon.dose
from services import cli

SPTYCHO = str(Path(sys.executable).parent / "sptycho")
DOSE = ["dose", "--spot", "5e-7", "--step", "5e-8"]


@pytest.fixture
def state(tmp_path, monkeypatch):
    """sptycho's state directory (logs) in tmp_path, debug off."""
    monkeypatch.setenv("SPTYCHO_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("SPTYCHO_DEBUG", raising=False)
    monkeypatch.setitem(cli.DEBUG, "on", False)
    return tmp_path


def run_main(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    return exit_.value.code


def raise_in_dose(monkeypatch, err: BaseException) -> None:
    def broken(*args, **kwargs):
        raise err

    monkeypatch.setattr(recon.dose, "dose_report", broken)


def test_unexpected_error_is_one_line_with_a_log(state, monkeypatch, capsys):
    raise_in_dose(monkeypatch, RuntimeError("boom in the dose code"))
    assert run_main(DOSE) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert line.startswith("error: unexpected RuntimeError: boom in the dose code (details in ")
    log = Path(line.rsplit("details in ", 1)[1].rstrip(")"))
    assert log.parent == state / "logs" and log.is_file()
    text = log.read_text()
    assert "Traceback" in text and "boom in the dose code" in text and "dose --spot" in text


def test_os_errors_keep_exit_status_2(state, monkeypatch, capsys):
    raise_in_dose(monkeypatch, OSError("a file nobody checked"))
    assert run_main(DOSE) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a file nobody checked (details in ")


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_prints_the_traceback(state, monkeypatch, capsys, how):
    raise_in_dose(monkeypatch, KeyError("missing key"))
    if how == "env":
        monkeypatch.setenv("SPTYCHO_DEBUG", "1")
        argv = DOSE
    else:
        argv = ["--debug", *DOSE]
    assert run_main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "raise err" in err
    assert err.strip().splitlines()[-1] == "error: unexpected KeyError: 'missing key'"
    assert not (state / "logs").exists()


def test_exit_and_system_exit_pass_through(state, monkeypatch, capsys):
    raise_in_dose(monkeypatch, typer.Exit(3))
    assert run_main(DOSE) == 3
    raise_in_dose(monkeypatch, SystemExit(5))
    assert run_main(DOSE) == 5
    assert capsys.readouterr().err == ""
    assert run_main(["dose", "--spot", "5e-7", "--overlap", "1.5"]) == 2  # fail(): unchanged
    assert capsys.readouterr().err.strip() == "error: overlap must be in [0, 1), got 1.5"


def test_success_exits_0(state, capsys):
    assert run_main([*DOSE, "--json"]) == 0
    assert '"k"' in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, text",
    [
        (["dose", "--spot", "abc"], "Invalid value for '--spot'"),
        (["dose"], "Missing option '--spot'"),
        (["no-such-command"], "No such command"),
        (["dose", "--spot", "5e-7", "--bogus"], "No such option"),
    ],
)
def test_usage_errors_are_one_line(state, capsys, args, text):
    assert run_main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], err


def test_help_and_no_arguments_still_show_the_help(state, capsys):
    assert run_main(["--help"]) == 0
    assert "--debug" in capsys.readouterr().out
    assert run_main([]) == 2  # click's status for "no arguments: help"
    assert "recon" in capsys.readouterr().out


def test_the_console_script_says_one_line_for_a_usage_error(tmp_path):
    env = {**os.environ, "SPTYCHO_STATE_DIR": str(tmp_path)}
    out = subprocess.run(
        [SPTYCHO, "dose", "--spot", "abc"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--spot'")


def test_no_carepeater_banner(tmp_path):
    env = {**os.environ, "SPTYCHO_STATE_DIR": str(tmp_path)}
    out = subprocess.run([SPTYCHO, *DOSE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "caRepeater" not in out.stderr
    # A channel search makes libca start a repeater: it finds the quiet stand-in.
    code = (
        "import os, services.cli, epics\n"
        "print(epics.caget('SPTYCHO_TEST_NOPE:x', timeout=0.3))\n"
        "print(os.environ['PATH'].split(os.pathsep)[-1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "caRepeater" not in out.stderr and "couldn't be located" not in out.stderr
    shim = tmp_path / "bin" / "caRepeater"
    assert shim.is_file() and os.access(shim, os.X_OK)
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "bin")
    assert subprocess.run([str(shim)], timeout=10).returncode == 0
