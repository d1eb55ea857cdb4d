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


def test_unknown_backend_is_one_error_line_naming_the_choices(cxi, tmp_path, monkeypatch, capsys):
    from services import cli

    monkeypatch.setenv("SPTYCHO_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "o.h5"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["recon", str(cxi), "-o", str(out), "--backend", "opencl"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--backend'"), lines
    assert "opencl" in lines[0] and "'auto', 'numpy', 'cupy'" in lines[0]
    assert not out.exists()


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


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "args, text",
    [
        (["--threshold", "nan"], "--threshold must be a finite number"),
        (["--threshold", "inf"], "--threshold must be a finite number"),
        (["--threshold", "-1e9"], "--threshold must be >= 0"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--binning", "0"], "binning >= 1"),
        (["--frame-size", "-4"], "frame size must be >= 0"),
    ],
)
def test_bad_numbers_are_refused_before_reading(app, cxi, tmp_path, args, text):
    out = tmp_path / "o.h5"
    res = _run(app, [str(cxi), "-o", str(out), "-q", *args])
    assert text in _single_error_line(res)
    assert not out.exists()


def test_output_that_is_the_input_is_refused_and_input_unchanged(app, cxi, tmp_path, monkeypatch):
    before = _sha256(cxi)
    link = tmp_path / "link.cxi"
    link.symlink_to(cxi)
    monkeypatch.chdir(cxi.parent)
    for output in (str(cxi), f"../{cxi.parent.name}/./{cxi.name}", cxi.name, str(link)):
        for extra in ([], ["--overwrite"]):
            res = _run(app, [str(cxi), "-o", output, "-q", "-a", "AP**2", *extra])
            assert "is the input file" in _single_error_line(res), output
    assert _sha256(cxi) == before
    assert not list(cxi.parent.glob(".*.part"))


def test_existing_output_needs_overwrite(app, cxi, tmp_path):
    out = tmp_path / "old.h5"
    out.write_bytes(b"an earlier result")
    res = _run(app, [str(cxi), "-o", str(out), "-q", "-a", "AP**2"])
    assert "exists: pass --overwrite" in _single_error_line(res)
    assert out.read_bytes() == b"an earlier result"
    res = _run(app, [str(cxi), "-o", str(out), "-q", "-a", "AP**2", "--overwrite"])
    assert res.exit_code == 0, res.output
    with h5py.File(out) as h:
        assert h.attrs["iterations"] == 2
    assert not list(tmp_path.glob(".*.part"))


def test_output_directory_is_refused(app, cxi, tmp_path):
    res = _run(app, [str(cxi), "-o", str(tmp_path), "-q"])
    assert "is a directory" in _single_error_line(res)


def test_unreadable_inputs_are_one_line(app, cxi, tmp_path):
    nodata = tmp_path / "nodata.cxi"
    nodata.write_bytes(cxi.read_bytes())
    with h5py.File(nodata, "r+") as h:
        del h["entry_1/instrument_1/detector_1/data"]  # data_1/data now dangles
    cases = [
        (nodata, "missing dataset /entry_1/instrument_1/detector_1/data"),
        (tmp_path, "is a directory, not a CXI file"),
    ]
    junk = tmp_path / "text.cxi"
    junk.write_text("plain text, not HDF5\n")
    cases.append((junk, "not an HDF5/CXI file"))
    for path, text in cases:
        res = _run(app, [str(path), "-o", str(tmp_path / "o.h5"), "-q"])
        assert text in _single_error_line(res), path
