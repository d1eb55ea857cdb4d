"""``sptycho recon``: a good run writes the result file; bad input is one ``error:`` line."""

import h5py
import numpy as np
import pytest
import typer
from synthetic_data import make, ptychogram
from typer.testing import CliRunner

from recon.cxi import write_cxi
from services.commands.recon import register


@pytest.fixture(scope="module")
def app():
    a = typer.Typer(pretty_exceptions_enable=False)
    register(a)

    @a.command("noop")
    def noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    return a


@pytest.fixture(scope="module")
def cxi(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "scan.cxi"
    return write_cxi(path, ptychogram(make(n_side=5)), compression=None)


def _run(app, args):
    return CliRunner().invoke(app, ["recon", *args])


def _single_error_line(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_recon_writes_result(app, cxi, tmp_path):
    out = tmp_path / "out.h5"
    res = _run(app, [str(cxi), "-o", str(out), "--algorithm", "AP**8,ML**2", "-q"])
    assert res.exit_code == 0, res.output
    with h5py.File(out) as h:
        assert h["object"].dtype == np.complex64 and h["object"].ndim == 2
        assert h["probe"].shape == (1, 64, 64)
        assert h["positions"].shape == (25, 2)
        assert h["llk"].shape == (10,)
        assert h["llk"][-1] < h["llk"][0]
        for key in ("pixel_size_m", "energy_eV", "algorithm", "iterations", "backend", "seconds"):
            assert key in h.attrs
        assert h.attrs["iterations"] == 10 and h.attrs["algorithm"] == "AP**8,ML**2"


def test_recon_probe_modes_and_progress(app, cxi, tmp_path):
    out = tmp_path / "modes.h5"
    res = _run(app, [str(cxi), "-o", str(out), "-a", "AP**4", "--probe-modes", "2"])
    assert res.exit_code == 0, res.output
    assert "llk=" in res.stderr  # tqdm progress bar with the log-likelihood
    with h5py.File(out) as h:
        assert h["probe"].shape == (2, 64, 64)


@pytest.mark.parametrize(
    "args, text",
    [
        (["missing.cxi"], "no such file"),
        (["{cxi}", "--algorithm", "XX**3"], "bad algorithm step"),
        (["{cxi}", "--algorithm", "AP**0"], "iteration count must be >= 1"),
        (["{cxi}", "--backend", "opencl"], "unknown backend"),
        (["{cxi}", "--probe-modes", "0"], "probe modes"),
        (["{cxi}", "--frame-size", "512"], "larger than the frames"),
        (["{junk}"], "not an HDF5"),
    ],
)
def test_bad_input_is_one_error_line(app, cxi, tmp_path, args, text):
    junk = tmp_path / "junk.cxi"
    junk.write_text("not hdf5")
    args = [a.format(cxi=cxi, junk=junk) for a in args]
    res = _run(app, [*args, "-o", str(tmp_path / "o.h5"), "-q"])
    assert text in _single_error_line(res)


def test_nan_frames_are_one_error_line(app, cxi, tmp_path):
    bad = tmp_path / "nan.cxi"
    bad.write_bytes(cxi.read_bytes())
    with h5py.File(bad, "r+") as h:
        d = h["entry_1/instrument_1/detector_1/data"][()].astype(np.float32)
        d[0, 0, 0] = np.nan
        del h["entry_1/instrument_1/detector_1/data"]
        h["entry_1/instrument_1/detector_1/data"] = d
    res = _run(app, [str(bad), "-o", str(tmp_path / "o.h5"), "-q"])
    assert "NaN" in _single_error_line(res)
