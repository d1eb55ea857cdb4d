"""The sptycho console command, run as a user runs it (a real subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.cxi import read_cxi

SPTYCHO = str(Path(sys.executable).parent / "sptycho")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([SPTYCHO, *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(out: subprocess.CompletedProcess, text: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error:") and text in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def test_help_lists_the_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for name in ("simulate", "recon", "dose"):
        assert name in out.stdout


def test_simulate_writes_a_readable_cxi(tmp_path):
    path = tmp_path / "bn.cxi"
    out = run(
        "simulate",
        "--sample",
        "bn-bamboo",
        "--energy",
        "192",
        "--polarization",
        "LH",
        "--spot",
        "0.5e-6",
        "--overlap",
        "0.8",
        "--area",
        "0.4e-6",
        "--exposure",
        "0.1",
        "--frame-size",
        "64",
        "--seed",
        "1",
        "--dark-frames",
        "5",
        "-q",
        "-o",
        str(path),
    )
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout
    p = read_cxi(path)
    assert p.frames.shape == (25, 64, 64)
    assert p.energy_ev == pytest.approx(192.0)
    assert p.polarization == "LH"
    # Raw frames carry the dark offset.
    assert np.median(p.frames) >= np.median(p.dark) * 0.9


@pytest.mark.parametrize(
    "args, text",
    [
        (["--energy", "50"], "energy_ev"),
        (["--overlap", "1.2"], "overlap"),
        (["--sample", "unicorn"], "unknown sample"),
        (["--polarization", "XY"], "polarization"),
        (["--frame-size", "1100", "--energy", "100"], "cannot hold"),
    ],
)
def test_simulate_bad_input_gives_one_line(tmp_path, args, text):
    out = run("simulate", "-q", "-o", str(tmp_path / "x.cxi"), *args)
    assert_one_line_error(out, text)
    assert not (tmp_path / "x.cxi").exists()


def test_dose_json_reproduces_fig7():
    out = run("dose", "--spot", "500e-9", "--step", "50e-9", "--area", "2e-6", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["k"] == pytest.approx(78, rel=0.02)
    assert d["max_exposures"] == 81
    assert 60 < d["mean_exposures"] < 81
    out = run("dose", "--spot", "60e-9", "--overlap", "0.5", "--area", "2e-6", "--json")
    assert json.loads(out.stdout)["k_scan"] == pytest.approx(2.2, rel=0.05)


def test_dose_with_material_gives_gray():
    out = run(
        "dose",
        "--spot",
        "1e-6",
        "--overlap",
        "0.9",
        "--material",
        "BN",
        "--thickness",
        "100e-9",
        "--flux",
        "1e8",
        "--exposure",
        "0.1",
        "--energy",
        "192",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["dose_gray"] > 0 and d["dose_gray_max"] >= d["dose_gray"] * 0.5


@pytest.mark.parametrize(
    "args, text",
    [
        (["--spot", "500e-9"], "exactly one of --step and --overlap"),
        (["--spot", "500e-9", "--overlap", "1.5"], "overlap"),
        (["--spot", "500e-9", "--step", "50e-9", "--material", "kryptonite"], "unknown material"),
        (["--spot", "500e-9", "--step", "50e-9", "--material", "BN"], "together"),
    ],
)
def test_dose_bad_input_gives_one_line(args, text):
    assert_one_line_error(run("dose", *args), text)
