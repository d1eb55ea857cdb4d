"""The Reconstruction driver: chains, stepping, streaming frames in, the result file."""

import numpy as np
import pytest
from synthetic_data import make, ptychogram

from recon.cxi import CXIError
from recon.metrics import phase_correlation
from recon.prepare import prepare
from recon.reconstruction import Reconstruction, read_result, reconstruct, write_result


@pytest.fixture(scope="module")
def synth():
    return make(n_side=7)


def _truth(rec, synth):
    off = np.round((synth.positions - rec.engine.corners_px).mean(axis=0)).astype(int)
    assert off.min() >= 0
    h, w = rec.engine.obj_shape
    t = np.ones((h, w), np.complex64)
    src = synth.obj[off[0] : off[0] + h, off[1] : off[1] + w]
    t[: src.shape[0], : src.shape[1]] = src
    return t


def test_reconstruction_from_ptychogram(synth, tmp_path):
    rec = Reconstruction(ptychogram(synth), algorithm="AP**30,ML**10", backend="numpy")
    assert rec.total_iterations == 40
    rec.step(5)
    assert rec.iterations == 5 and not rec.finished
    res = rec.run()
    assert rec.finished and res.iterations == 40 and len(res.llk) == 40
    assert rec.engine.algorithms[29:31] == ["AP", "ML"]
    lit = res.illumination > 0.3 * res.illumination.max()
    assert phase_correlation(res.object, _truth(rec, synth), lit) >= 0.95
    # positions in the file are probe centres: corners + n/2
    np.testing.assert_allclose(res.positions, rec.data.corners_px + 32)
    path = write_result(tmp_path / "out.h5", res)
    back = read_result(path)
    np.testing.assert_array_equal(back.object, res.object)
    np.testing.assert_array_equal(back.probe, res.probe)
    assert back.object.dtype == np.complex64 and back.probe.ndim == 3
    assert back.positions.shape == (49, 2)
    assert back.llk.shape == (40,)
    assert back.algorithm == "AP**30,ML**10" and back.iterations == 40
    assert back.backend == "numpy" and back.energy_ev == 700.0
    assert back.pixel_size_m == pytest.approx(25e-9) and back.seconds > 0


def test_run_past_the_chain_and_explicit_algorithm(synth):
    rec = Reconstruction(ptychogram(synth), algorithm="AP**3")
    rec.run()
    rec.run(2)  # continues with the last algorithm
    rec.step(2, algorithm="ML")
    assert rec.engine.algorithms == ["AP"] * 5 + ["ML"] * 2


def test_add_frames_while_running(synth):
    p = ptychogram(synth)
    first = np.arange(49) < 25
    part = ptychogram(synth)
    part.frames = p.frames[first]
    part.positions_m = p.positions_m[first]
    rec = Reconstruction(part, algorithm="AP**60")
    rec.step(10)
    shape0 = rec.engine.obj_shape
    n = rec.add_frames(p.frames[~first], positions_m=p.positions_m[~first])
    assert n == 49
    assert rec.engine.obj_shape[0] > shape0[0]  # the object grew to hold the new patches
    res = rec.run()
    lit = res.illumination > 0.3 * res.illumination.max()
    assert phase_correlation(res.object, _truth(rec, synth), lit) >= 0.95
    full, _ = prepare(p)
    d = rec.engine.corners_px - full.corners_px
    assert np.ptp(d, axis=0).max() < 1e-6  # same scan geometry as preparing all at once


def test_reconstruct_from_prepared_data_and_errors(synth, tmp_path):
    data, _ = prepare(ptychogram(synth))
    res = reconstruct(data, "DM**5")
    assert res.algorithm == "DM**5" and len(res.llk) == 5
    with pytest.raises(ValueError):
        Reconstruction(data, algorithm="XX**3")
    with pytest.raises(ValueError, match="backend"):
        Reconstruction(data, backend="opencl")
    with pytest.raises(CXIError):
        read_result(tmp_path / "none.h5")
    (tmp_path / "x.h5").write_bytes(b"nope")
    with pytest.raises(CXIError):
        read_result(tmp_path / "x.h5")
