"""``sptycho demo --exit-when-done`` as a user runs it: IOC, embedded Tiled, worker and web
app in one command, a small stack, exit 0 with where the results are."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.exports import validate_nxstxm

pytestmark = pytest.mark.system

SPTYCHO = str(Path(sys.executable).with_name("sptycho"))


def _env():
    env = dict(os.environ)
    env.pop("SPTYCHO_TEST_CA_PORT", None)  # the demo picks its own Channel Access port
    return env


def test_demo_runs_a_stack_and_exits_when_done(tmp_path):
    cmd = [SPTYCHO, "demo", "--exit-when-done", "--port", "0", "--data-dir", str(tmp_path)]
    cmd += ["--energies", "190,192", "--polarizations", "LH,LV", "--frame-size", "64"]
    cmd += ["--algorithm", "AP**30"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=480, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    # only progress bars on the terminal: no library warnings, no libca banners at the end
    for noise in ("Warning", "CA.Client.Exception", "Traceback"):
        assert noise not in out.stderr, out.stderr[-3000:]
    text = out.stdout
    match = re.search(r"done in (\d+) s: (\d+) frames, (\d+) ptychograms reconstructed", text)
    assert match, text
    assert int(match.group(2)) == 4 * 81 and int(match.group(3)) == 4
    assert "failed" not in text and "live page: http://127.0.0.1:" in text
    assert re.search(r"stack analysis: .*/recon/stack \(.*xld", text)
    for pol in ("LH", "LV"):
        path = tmp_path / "exports" / f"stack_{pol}.nxs"
        assert f"NXstxm ({pol}): {path}" in text
        assert validate_nxstxm(path) == []


def test_demo_refuses_bad_input_in_one_line(tmp_path):
    cmd = [SPTYCHO, "demo", "--exit-when-done", "--energies", "5000", "--data-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "5000" in lines[0]
    assert not (tmp_path / "tiled").exists()  # refused before anything started
