"""``sptycho export`` and ``sptycho import``: files out, and one clear line on bad input."""

import numpy as np
import typer
from typer.testing import CliRunner

from recon.reconstruction import ReconstructionResult, write_result
from services import exports as ex
from services.commands import export, import_

app = typer.Typer()
export.register(app)
import_.register(app)
runner = CliRunner()


def _result(path, obj, energy):
    res = ReconstructionResult(
        object=obj.astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        positions=np.zeros((1, 2)),
        llk=np.ones(3),
        pixel_size_m=10e-9,
        energy_ev=energy,
        algorithm="AP**3",
        iterations=3,
        backend="numpy",
        seconds=0.1,
    )
    write_result(path, res)
    return path


def test_export_nxstxm_tiff_csv(tmp_path):
    y, x = np.indices((48, 48))
    disk = ((y - 24) ** 2 + (x - 24) ** 2 < 100).astype(float)
    files = [
        _result(tmp_path / f"r{i}.h5", np.exp(-k * disk), e)
        for i, (k, e) in enumerate([(0.2, 190.0), (1.0, 192.0), (0.3, 194.0)])
    ]
    out = tmp_path / "stack.nxs"
    r = runner.invoke(app, ["export", "nxstxm", *map(str, files), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert ex.validate_nxstxm(out) == []
    back = ex.read_nxstxm(out)
    assert back["data"].shape == (3, 48, 48)
    np.testing.assert_allclose(back["energy"], [190, 192, 194])
    od_centre = back["data"][:, 24, 24]
    np.testing.assert_allclose(od_centre, 2 * np.array([0.2, 1.0, 0.3]) / np.log(10), rtol=0.02)
    r = runner.invoke(app, ["export", "tiff", *map(str, files), "-o", str(tmp_path / "s.tif")])
    assert r.exit_code == 0, r.output
    stack, energies = ex.read_tiff_stack(tmp_path / "s.tif")
    np.testing.assert_allclose(stack, back["data"], atol=1e-6)
    r = runner.invoke(app, ["export", "csv", *map(str, files), "-o", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    e, spectra = ex.read_spectra_csv(tmp_path / "s.csv")
    assert np.argmax(spectra["od_sample"]) == 1


def test_export_bad_input_is_one_line(tmp_path):
    r = runner.invoke(app, ["export", "png", "x.h5", "-o", "y"])
    assert r.exit_code == 2 and "unknown format" in r.output
    r = runner.invoke(app, ["export", "nxstxm", str(tmp_path / "none.h5"), "-o", "y"])
    assert r.exit_code == 2 and "no such file" in r.output
    bad = tmp_path / "bad.cxi"
    bad.write_text("not hdf5")
    r = runner.invoke(app, ["export", "cxi", str(bad), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["import", "cxi", str(bad), "--tiled", "x", "--polarization", "XX"])
    assert r.exit_code == 2 and "polarization" in r.output
