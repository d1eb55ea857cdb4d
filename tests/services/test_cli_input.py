"""Bad input to ``sptycho dose``, ``simulate``, ``scan``, ``ioc`` and ``demo``: one ``error:``
line naming the problem, exit status 2, no traceback, nothing started or written."""

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recon.dose import MAX_GRID_CELLS, MAX_POINTS, check_scan_size
from services.cli import app

SPTYCHO = str(Path(sys.executable).parent / "sptycho")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result, code: int = 2) -> str:
    """The single ``error:`` line of a refused command."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--step", "1e-12"], ["4,000,004,000,001 scan points", "TiB", "250,000"]),
        (["--step", "1e-10", "--area", "1e-3"], ["scan points", "PiB", "250,000"]),
        (["--step", "1e-8", "--area", "1e-8", "--spot", "1e-3"], ["neighbour cells", "40,000,000"]),
    ],
)
def test_dose_refuses_grids_too_large_before_allocating(args, words):
    t0 = time.monotonic()
    line = one_error_line(invoke("dose", "--spot", "500e-9", *args))
    assert time.monotonic() - t0 < 10  # refused, not computed
    for word in words:
        assert word in line, line


BEAM = ["--material", "BN", "--thickness", "1e-7", "--flux", "1e8", "--exposure", "0.1"]


@pytest.mark.parametrize(
    "option, value, text",
    [
        ("--thickness", "-1e-7", "--thickness must be > 0"),
        ("--flux", "-1e8", "--flux must be > 0"),
        ("--exposure", "0", "--exposure must be > 0"),
        ("--energy", "-192", "--energy must be > 0"),
        ("--energy", "1", "--energy must be within"),
        ("--thickness", "nan", "--thickness must be a finite number"),
        ("--flux", "inf", "--flux must be a finite number"),
        ("--energy", "nan", "--energy must be a finite number"),
    ],
)
def test_dose_refuses_bad_beam(option, value, text):
    beam = dict(zip(BEAM[::2], BEAM[1::2], strict=True)) | {"--energy": "192"}
    beam[option] = value
    args = [x for kv in beam.items() for x in kv]
    line = one_error_line(invoke("dose", "--spot", "1e-6", "--overlap", "0.9", *args))
    assert text in line, line


@pytest.mark.parametrize("option", ["--spot", "--step", "--area"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_dose_refuses_non_finite_geometry(option, value):
    args = {"--spot": "5e-7", "--step": "5e-8", "--area": "2e-6"} | {option: value}
    line = one_error_line(invoke("dose", *[x for kv in args.items() for x in kv]))
    assert f"{option} must be a finite number" in line, line


def test_dose_overlap_nan_is_named():
    line = one_error_line(invoke("dose", "--spot", "5e-7", "--overlap", "nan"))
    assert "--overlap must be a finite number" in line


def test_dose_guard_limits_are_the_module_constants():
    with pytest.raises(ValueError, match=f"{MAX_POINTS:,}"):
        check_scan_size(500e-9, 1e-12, 2e-6)
    with pytest.raises(ValueError, match=f"{MAX_GRID_CELLS:,}"):
        check_scan_size(1e-3, 1e-8, 1e-8)
    with pytest.raises(ValueError, match="finite"):
        check_scan_size(math.nan, 1e-8, 1e-6)
    check_scan_size(500e-9, 50e-9, 2e-6)  # the paper's scan passes


@pytest.mark.parametrize(
    "args, text",
    [
        (["--energy", "nan"], "--energy must be a finite number"),
        (["--energy", "inf"], "--energy must be a finite number"),
        (["--spot", "nan"], "--spot must be a finite number"),
        (["--overlap", "nan"], "--overlap must be a finite number"),
        (["--flux", "inf"], "--flux must be a finite number"),
        (["--jitter", "nan"], "--jitter must be a finite number"),
    ],
)
def test_simulate_refuses_non_finite(tmp_path, args, text):
    out = tmp_path / "x.cxi"
    line = one_error_line(invoke("simulate", "-q", "-o", str(out), *args))
    assert text in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "args, text",
    [
        (["raster", "--energy", "nan"], "--energy must be a finite number"),
        (["raster", "--exposure", "inf"], "--exposure must be a finite number"),
        (["stack", "--energies", "nan"], "energies must be finite numbers"),
        (["stack", "--energies", "192,inf"], "energies must be finite numbers"),
        (["stack", "--energies", "50"], "energy 50 eV is outside 100-2000 eV"),
        (["stack", "--energies", "192,5000"], "energy 5000 eV is outside 100-2000 eV"),
        (["stack", "--spot", "nan"], "--spot must be a finite number"),
    ],
)
def test_scan_refuses_bad_numbers_before_connecting(args, text):
    t0 = time.monotonic()
    line = one_error_line(invoke("scan", *args, "--prefix", "NOPE:"))
    assert text in line, line
    assert time.monotonic() - t0 < 10  # no connection attempt


@pytest.mark.parametrize(
    "args, text",
    [
        (["--flux", "nan"], "--flux must be a finite number"),
        (["--pol-time", "inf"], "--pol-time must be a finite number"),
    ],
)
def test_ioc_refuses_non_finite(args, text):
    assert text in one_error_line(invoke("ioc", *args))


@pytest.mark.parametrize(
    "args, text",
    [
        (["--timeout", "-1"], "--timeout must be > 0"),
        (["--timeout", "nan"], "--timeout must be a finite number"),
        (["--energies", "nan"], "energies must be finite numbers"),
        (["--energies", "5000"], "5000 eV is outside 100-2000 eV"),
        (["--algorithm", "XX**3"], "bad algorithm step"),
        (["--port", "70000"], "port"),
        (["--key", "short"], "key"),
        (["--frame-size", "4"], "frame_size"),
        (["--host", "no-such-host.invalid"], "cannot listen on"),
    ],
)
def test_demo_refuses_bad_options_before_starting_anything(tmp_path, args, text):
    data = tmp_path / "demo"
    t0 = time.monotonic()
    out = subprocess.run(
        [SPTYCHO, "demo", "--exit-when-done", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], out.stderr
    assert "starting" not in out.stderr and "Traceback" not in out.stderr
    assert not data.exists()  # the IOC, Tiled and the worker never started
    assert elapsed < 10, elapsed


def test_demo_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(
            invoke("demo", "--port", str(port), "--data-dir", str(tmp_path / "d"))
        )
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert not (tmp_path / "d").exists()


@pytest.fixture
def no_session(monkeypatch):
    """Record any attempt to open a beamline session (connect to the IOC, start Tiled)."""
    import services.session

    opened = []

    def refuse(*args, **kwargs):
        opened.append((args, kwargs))
        raise AssertionError("a session was opened")

    monkeypatch.setattr(services.session, "open_session", refuse)
    return opened


@pytest.mark.parametrize("kind", ["raster", "stack"])
def test_scan_refuses_continuous_motion_without_fly_mode(tmp_path, no_session, kind):
    data = tmp_path / "data"
    t0 = time.monotonic()
    args = ["scan", kind, "--mode", "step", "--motion", "continuous", "--prefix", "NOPE:"]
    args += ["--data-dir", str(data)]
    line = one_error_line(invoke(*args))
    assert line == "error: motion 'continuous' needs mode 'fly' (a step scan stops at every point)"
    assert time.monotonic() - t0 < 10  # no connection attempt
    assert no_session == [] and not data.exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    "option, value, choices",
    [("--mode", "bogus", "'step', 'fly'"), ("--motion", "smooth", "'step', 'continuous'")],
)
def test_scan_refuses_an_unknown_mode_or_motion_in_one_line(
    tmp_path, no_session, monkeypatch, capsys, option, value, choices
):
    from services import cli

    monkeypatch.setenv("SPTYCHO_STATE_DIR", str(tmp_path / "state"))
    data = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["scan", "raster", option, value, "--data-dir", str(data)])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: Invalid value for '{option}'"), lines
    assert value in lines[0] and choices in lines[0]
    assert no_session == [] and not data.exists()


@pytest.mark.parametrize("kind", ["raster", "stack"])
@pytest.mark.parametrize(
    "args, mode, motion",
    [
        ([], "fly", "step"),
        (["--mode", "step"], "step", "step"),
        (["--mode", "FLY", "--motion", "continuous"], "fly", "continuous"),
    ],
)
def test_scan_mode_and_motion_reach_the_plan_parameters(monkeypatch, kind, args, mode, motion):
    from services.commands import scan

    seen = []
    monkeypatch.setattr(scan, "_run", lambda factory, params, *rest: seen.append(params))
    result = invoke("scan", kind, *args)
    assert result.exit_code == 0, result.output
    (params,) = seen
    assert (params.mode, params.motion) == (mode, motion)
