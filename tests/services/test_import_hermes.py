"""``sptycho simulate --layout hermes`` -> ``sptycho import hermes`` -> ``sptycho recon``:
the reconstruction of each energy of a stack matches the simulator's truth; bad folders
are one ``error:`` line."""

import h5py
import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter
from typer.testing import CliRunner

from recon.cxi import read_cxi
from recon.metrics import phase_correlation
from recon.reconstruction import read_result
from services.cli import app
from services.imports import import_hermes
from services.tiled_server import TiledServer
from services.worker.tiled_io import RunReader
from simulators.dataset import simulate_ptychogram
from simulators.hermes_layout import simulate_hermes, truth_on_result_grid

SCAN = dict(sample="bn-bamboo", spot_m=1e-6, overlap=0.9, area_m=1e-6, frame_size=128, seed=1)
SIM_ARGS = ["--sample", "bn-bamboo", "--spot", "1e-6", "--overlap", "0.9", "--area", "1e-6"]
OPTICS = ["--zone-plate", "240e-6,50e-9,72e-6", "--spot", "1e-6"]
runner = CliRunner()


def _ok(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r


def _one_error(args, text):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], r.stderr
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hermes") / "stack"
    _ok(
        ["simulate", "--layout", "hermes", "-o", str(folder), "--energies", "190,192"]
        + SIM_ARGS
        + ["--frame-size", "128", "--seed", "1", "-q"]
    )
    return folder


def test_stack_layout_as_pynx_reads_it(stack):
    names = sorted(p.name for p in stack.iterdir())
    assert len([n for n in names if n.startswith("Stack_") and n.endswith("_001.hdf5")]) == 1
    assert sum("_nrj01_000001.nxs" in n or "_nrj02_000001.nxs" in n for n in names) == 2
    assert sum(n.endswith("_dark_000001.nxs") for n in names) == 1
    assert "truth.h5" in names
    (desc,) = stack.glob("Stack_*.hdf5")
    with h5py.File(desc) as h:
        np.testing.assert_allclose(h["entry1/camera/energy"][()], [190.0, 192.0])
        assert h["entry1/camera/sample_x"].shape == (11,)  # raster axes, meshed by the reader


def test_import_gives_the_simulators_frames_and_positions(stack, tmp_path):
    out = tmp_path / "cxi"
    args = ["import", "hermes", str(stack), "-o", str(out), "--distance", "0.0513"]
    _ok([*args, "--pixel-size", "6.6e-5", *OPTICS])
    paths = sorted(out.glob("*.cxi"))
    assert [p.name for p in paths] == ["p0000_190.00eV_LH.cxi", "p0001_192.00eV_LH.cxi"]
    direct = simulate_ptychogram(energy_ev=192.0, **SCAN)
    back = read_cxi(paths[1])
    np.testing.assert_array_equal(back.frames, direct.frames)  # orientation undone exactly
    np.testing.assert_allclose(back.positions_m, direct.positions_m)
    assert back.zone_plate["defocus"] == pytest.approx(direct.zone_plate["defocus"])
    assert back.distance_m == 0.0513 and back.pixel_m == 6.6e-5


def test_reconstruction_of_each_energy_matches_the_truth(stack, tmp_path):
    out = tmp_path / "cxi"
    args = ["import", "hermes", str(stack), "-o", str(out), "--distance", "0.0513"]
    _ok([*args, "--pixel-size", "6.6e-5", *OPTICS])
    for number, cxi in enumerate(sorted(out.glob("*.cxi")), start=1):
        result = tmp_path / f"r{number}.h5"
        _ok(["recon", str(cxi), "-o", str(result), "-a", "AP**100", "-q"])
        res = read_result(result)
        truth = truth_on_result_grid(stack / "truth.h5", number, res.positions, res.object.shape)
        lit = res.illumination > 0.1 * res.illumination.max()
        assert phase_correlation(res.object, truth, lit) >= 0.9


def test_import_into_tiled_as_one_run(tmp_path):
    folder = simulate_hermes(tmp_path / "img", None, energy_ev=192.0, **{**SCAN, "frame_size": 32})
    n = folder.n_frames
    with TiledServer(tmp_path / "tiled") as server:
        client = server.client()
        uid = import_hermes(tmp_path / "img", TiledWriter(client, batch_size=50), 0.0513, 6.6e-5)
        reader = RunReader(client, uid)
        assert reader.stopped()
        table = reader.table()
        assert len(table["ptychogram"]) == n
        np.testing.assert_allclose(table["optics_energy"], 192.0)
        assert "dark" in client[uid]


def test_bad_hermes_input_is_one_error_line(stack, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    geometry = ["--distance", "0.05", "--pixel-size", "1e-5"]
    out = ["-o", str(tmp_path / "o")]
    _one_error(["import", "hermes", str(empty), *out, *geometry], "no HERMES description file")
    _one_error(["import", "hermes", str(tmp_path / "none"), *out, *geometry], "no such folder")
    _one_error(["import", "hermes", str(stack), *out, "--pixel-size", "1e-5"], "--distance")
    _one_error(["import", "hermes", str(stack), *geometry], "either -o")
    _one_error(["import", "hermes", str(stack), *out, *geometry, "--energy", "190"], "1 energies")
    _one_error(["simulate", "-o", str(tmp_path / "x.cxi"), "--energies", "190"], "--layout hermes")
