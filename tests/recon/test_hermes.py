"""HERMES (SOLEIL) layout reader: positions (raster axes or per-point coordinates), the
first-dataset rule, energy numbers, dark, orientation and one-line errors."""

import h5py
import numpy as np
import pytest

from recon.hermes import (
    HermesError,
    find_scans,
    first_dataset,
    orient,
    read_dark,
    read_hermes,
    read_positions,
)


def _nxs(path, frames, name="SI107_image", extra=()):
    with h5py.File(path, "w") as h:
        g = h.create_group("entry/scan_data")
        g[name] = frames
        for other in extra:  # datasets that sort after the frames
            g[other] = np.zeros(3)
    return path


def _description(path, x, y, energy):
    with h5py.File(path, "w") as h:
        h["entry1/camera/sample_x"] = np.asarray(x, float)
        h["entry1/camera/sample_y"] = np.asarray(y, float)
        h["entry1/camera/energy"] = energy
    return path


def _stack(folder, n_energies=2, nx=3, ny=2, energies=(700.0, 705.0, 710.0), size=16):
    """A stack folder: frame k of energy e is filled with 100 e + k."""
    _description(folder / "Stack_20240101_007.hdf5", np.arange(nx), 10 + np.arange(ny), energies)
    n = nx * ny
    for e in range(n_energies):
        frames = np.stack([np.full((size, size), 100 * e + k, np.uint16) for k in range(n)])
        _nxs(folder / f"stack_20240101_007_nrj{e + 1:02d}_000001.nxs", frames)
    darks = np.stack([np.full((size, size), v, np.uint16) for v in (999, 4, 6)])
    _nxs(folder / "stack_20240101_007_dark_000001.nxs", darks)
    return folder


def test_raster_axes_are_meshed_x_fastest(tmp_path):
    d = _description(tmp_path / "Image_20240101_001.hdf5", [0.0, 1.0, 2.0], [5.0, 6.0], 700.0)
    pos = read_positions(d, 6)
    np.testing.assert_allclose(pos[:, 1] * 1e6, [0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(pos[:, 0] * 1e6, [5, 5, 5, 6, 6, 6])


def test_full_coordinates_are_used_as_they_are(tmp_path):
    x, y = [0.1, 0.7, 0.2, 0.9], [1.0, 1.3, 1.8, 1.1]
    d = _description(tmp_path / "Image_20240101_001.hdf5", x, y, 700.0)
    pos = read_positions(d, 4)
    np.testing.assert_allclose(pos * 1e6, np.stack([y, x], axis=1))
    with pytest.raises(HermesError, match="5 frames but"):
        read_positions(d, 5)


def test_first_dataset_of_scan_data_whatever_its_name(tmp_path):
    frames = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    path = _nxs(tmp_path / "a.nxs", frames, name="A_image", extra=("B_timestamps", "C_x"))
    np.testing.assert_array_equal(first_dataset(path), frames)
    with h5py.File(tmp_path / "empty.nxs", "w") as h:
        h.create_group("entry/scan_data")
    with pytest.raises(HermesError, match="holds no dataset"):
        first_dataset(tmp_path / "empty.nxs")


def test_dark_drops_its_first_frame(tmp_path):
    darks = np.stack([np.full((8, 8), v, np.uint16) for v in (1000, 4, 6)])
    assert read_dark(_nxs(tmp_path / "d.nxs", darks)) == pytest.approx(np.full((8, 8), 5.0))


def test_orientation_is_transpose_then_flips(tmp_path):
    a = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(orient(a, (True, False, False)), a.T)
    np.testing.assert_array_equal(orient(a, (False, True, True)), a[::-1, ::-1])
    np.testing.assert_array_equal(orient(a), a.T[::-1, ::-1])


def test_stack_energy_numbers_index_the_description(tmp_path):
    _stack(tmp_path, n_energies=2)
    (scan,) = find_scans(tmp_path)
    assert (scan.kind, scan.date, scan.number, scan.energy_indices) == (
        "stack",
        "20240101",
        7,
        [0, 1],
    )
    ps = read_hermes(tmp_path, 0.05, 11e-6, orientation=(False, False, False))
    assert [p.energy_ev for p in ps] == [700.0, 705.0]
    assert ps[1].frames[4, 0, 0] == 104  # frame 4 of nrj02
    np.testing.assert_allclose(ps[0].dark, 5.0)
    np.testing.assert_allclose(ps[0].positions_m[1] * 1e6, [10.0, 1.0])
    assert ps[0].distance_m == 0.05 and ps[0].pixel_m == 11e-6
    over = read_hermes(tmp_path, 0.05, 11e-6, energies_ev=[701.0, 702.0])
    assert [p.energy_ev for p in over] == [701.0, 702.0]


def test_energy_number_past_the_description_is_refused(tmp_path):
    _stack(tmp_path, n_energies=3, energies=[700.0, 705.0])
    with pytest.raises(HermesError, match="none for nrj03"):
        read_hermes(tmp_path, 0.05, 11e-6)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_description", "no HERMES description file"),
        ("no_dark", "no dark file"),
        ("frames", "7 frames but"),
        ("several", "holds scans 7, 8"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, damage, message):
    _stack(tmp_path)
    if damage == "no_description":
        (tmp_path / "Stack_20240101_007.hdf5").unlink()
    elif damage == "no_dark":
        (tmp_path / "stack_20240101_007_dark_000001.nxs").unlink()
    elif damage == "frames":
        _nxs(tmp_path / "stack_20240101_007_nrj01_000001.nxs", np.zeros((7, 16, 16), np.uint16))
    else:
        for f in list(tmp_path.iterdir()):
            (tmp_path / f.name.replace("_007", "_008")).write_bytes(f.read_bytes())
    with pytest.raises(HermesError, match=message) as err:
        read_hermes(tmp_path, 0.05, 11e-6)
    assert "\n" not in str(err.value)


def test_missing_folder_and_bad_geometry(tmp_path):
    with pytest.raises(HermesError, match="no such folder"):
        read_hermes(tmp_path / "none", 0.05, 11e-6)
    with pytest.raises(HermesError, match="distance and pixel size"):
        read_hermes(tmp_path, 0.0, 11e-6)
