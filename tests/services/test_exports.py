"""Exports read back to the same arrays: CXI per ptychogram, NXstxm (valid against the
definition's required fields), TIFF stacks and CSV spectra; CXI files import as runs."""

import h5py
import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter

from recon.cxi import read_cxi
from services import exports as ex
from services.imports import import_cxi
from services.tiled_server import TiledServer
from services.worker.tiled_io import RunReader
from simulators.dataset import simulate_ptychogram


@pytest.fixture(scope="module")
def ptychograms():
    kw = dict(sample="bn-bamboo", spot_m=1e-6, overlap=0.5, area_m=1e-6)
    kw.update(exposure_s=0.1, frame_size=32, seed=4)
    return [
        simulate_ptychogram(energy_ev=192.0, polarization="LH", **kw),
        simulate_ptychogram(energy_ev=192.0, polarization="LV", **kw),
    ]


def _stack():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 12, 16)).astype(np.float32), np.linspace(188, 196, 5)


def test_cxi_round_trip(tmp_path, ptychograms):
    paths = ex.export_cxi(ptychograms, tmp_path)
    assert [p.name for p in paths] == ["p0000_192.00eV_LH.cxi", "p0001_192.00eV_LV.cxi"]
    for path, p in zip(paths, ptychograms, strict=True):
        back = read_cxi(path)
        np.testing.assert_array_equal(back.frames, p.frames)
        np.testing.assert_allclose(back.positions_m, p.positions_m)
        assert back.energy_ev == pytest.approx(p.energy_ev)
        assert back.polarization == p.polarization
        np.testing.assert_allclose(back.dark, p.dark)
        with h5py.File(path) as h:  # PyNX's (3, N) layout, the CXI paths PtyPy reads
            assert h["entry_1/sample_1/geometry_1/translation"].shape == (3, p.n_frames)
            assert "entry_1/instrument_1/detector_1/distance" in h


def test_nxstxm_round_trip_and_valid(tmp_path):
    od, e = _stack()
    path = ex.write_nxstxm(tmp_path / "stack.nxs", od, e, 10e-9, i0=np.full(5, 2.0))
    assert ex.validate_nxstxm(path) == []
    back = ex.read_nxstxm(path)
    np.testing.assert_array_equal(back["data"], od)
    np.testing.assert_allclose(back["energy"], e)
    assert back["sample_x"].shape == (16,) and back["sample_y"].shape == (12,)
    assert np.diff(back["sample_x"]) == pytest.approx(np.full(15, 0.01))
    np.testing.assert_allclose(back["control"], 2.0)
    with h5py.File(path) as h:
        assert h["entry1/data"].attrs["NX_class"] == "NXdata"
        assert h["entry1/definition"][()] == b"NXstxm"


def test_nxstxm_validator_finds_problems(tmp_path):
    od, e = _stack()
    path = ex.write_nxstxm(tmp_path / "bad.nxs", od, e, 10e-9)
    with h5py.File(path, "a") as h:
        del h["entry1/control"]
        h["entry1/instrument/source"].attrs["NX_class"] = "NXcollection"
    problems = ex.validate_nxstxm(path)
    assert "/entry1/control is missing" in problems
    assert any("source has NX_class 'NXcollection'" in p for p in problems)
    other = tmp_path / "shape.nxs"
    ex.write_nxstxm(other, od, e, 10e-9)
    with h5py.File(other, "a") as h:
        del h["entry1/instrument/monochromator/energy"]
        h["entry1/instrument/monochromator/energy"] = np.arange(3.0)
    assert any("data/data has shape" in p for p in ex.validate_nxstxm(other))
    (tmp_path / "not.h5").write_text("hello")
    assert "not an HDF5 file" in ex.validate_nxstxm(tmp_path / "not.h5")[0]
    with pytest.raises(ValueError):
        ex.write_nxstxm(tmp_path / "x.nxs", od, e[:3], 1e-8)


def test_tiff_and_csv_round_trip(tmp_path):
    od, e = _stack()
    path = ex.write_tiff_stack(tmp_path / "od.tif", od, e)
    back, energies = ex.read_tiff_stack(path)
    np.testing.assert_array_equal(back, od)
    np.testing.assert_allclose(energies, e)
    spectra = {"tubes": od[:, 0, 0].astype(float), "web": od[:, 1, 1].astype(float)}
    csv_path = ex.write_spectra_csv(tmp_path / "spectra.csv", e, spectra)
    e2, s2 = ex.read_spectra_csv(csv_path)
    np.testing.assert_array_equal(e2, e)
    assert list(s2) == ["tubes", "web"]
    for k in spectra:
        np.testing.assert_array_equal(s2[k], spectra[k])
    with pytest.raises(ValueError):
        ex.write_spectra_csv(tmp_path / "bad.csv", e, {"x": [1.0]})


def _foreign_cxi(path, p):
    """A CXI file as another facility writes it: (N, 3) translation, no extensions."""
    with h5py.File(path, "w") as h:
        h["entry_1/instrument_1/detector_1/data"] = p.frames
        h["entry_1/instrument_1/detector_1/distance"] = p.distance_m
        h["entry_1/instrument_1/detector_1/x_pixel_size"] = p.pixel_m
        h["entry_1/instrument_1/detector_1/y_pixel_size"] = p.pixel_m
        h["entry_1/instrument_1/source_1/energy"] = p.energy_ev * 1.602176634e-19
        pos = p.positions_m
        h["entry_1/sample_1/geometry_1/translation"] = np.stack(
            [pos[:, 1], pos[:, 0], np.zeros(len(pos))], axis=1
        )
    return path


def test_import_cxi_as_a_run(tmp_path, ptychograms):
    ours = ex.export_cxi(ptychograms[:1], tmp_path)[0]
    theirs = _foreign_cxi(tmp_path / "foreign.cxi", ptychograms[1])
    with TiledServer(tmp_path / "tiled") as server:
        client = server.client()
        uid = import_cxi([ours, theirs], TiledWriter(client, batch_size=50), polarization="LV")
        reader = RunReader(client, uid)
        assert reader.stopped()
        assert reader.geometry["points_per_ptychogram"] == ptychograms[0].n_frames
        table = reader.table()
        n = ptychograms[0].n_frames
        assert len(table["ptychogram"]) == 2 * n
        assert list(table["polarization_readback"][[0, n]]) == ["LH", "LV"]
        np.testing.assert_allclose(table["optics_energy"], 192.0)
        np.testing.assert_allclose(table["sample_fx"][n:], ptychograms[1].positions_m[:, 1] * 1e6)
        frames = reader.frames(np.arange(n, 2 * n))
        np.testing.assert_array_equal(frames, ptychograms[1].frames.astype(frames.dtype))
        assert "dark" in client[uid]
    with pytest.raises(ValueError, match="no CXI files"):
        import_cxi([], lambda name, doc: None)
