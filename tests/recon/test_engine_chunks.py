"""The engine's result does not depend on how the frames are chunked in memory, and streaming
new frames into it copies only the new ones."""

import numpy as np
import pytest
from synthetic_data import make

from recon.algorithm_chain import parse_algorithm, run_chain
from recon.algorithms import Engine
from recon.engine_options import EngineOptions
from recon.operators import fourier_shift


@pytest.fixture(scope="module")
def data():
    return make(n_side=7, seed=3)


def _engine(s, chunk_bytes, modes=1):
    probe = (0.8 * fourier_shift(s.probe, 0.6, -0.3)).astype(np.complex64)
    probe = np.stack([probe] + [0.1 * np.roll(probe, 3 * k, axis=1) for k in range(1, modes)])
    opts = EngineOptions(chunk_bytes=chunk_bytes, probe_update_start=1)
    return Engine(s.intensities, s.positions, probe, s.obj.shape, options=opts)


@pytest.mark.parametrize("algorithm", ["AP**10", "RAAR**10", "DM**6,AP**4"])
def test_one_chunk_and_many_give_the_same_result(data, algorithm):
    one = _engine(data, 2**31, modes=2)
    frame_bytes = 2 * 64 * 64 * 8
    many = _engine(data, 5 * frame_bytes, modes=2)  # 49 frames in 10 chunks
    assert len(one.chunks) == 1 and len(many.chunks) == 10
    for e in (one, many):
        run_chain(e, parse_algorithm(algorithm))
    dev1, devn = np.array(one.deviance), np.array(many.deviance)
    np.testing.assert_allclose(devn, dev1, rtol=1e-4)
    for a, b in ((one.obj, many.obj), (one.probe, many.probe)):
        assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(a)


def test_streamed_frames_grow_in_place_and_match_one_batch(data):
    """Frames appended in 12 batches give the engine of all frames at once; the stack is
    re-allocated only when its capacity doubles (O(N) copying over a scan, not O(N^2))."""
    n = len(data.intensities)
    whole = _engine(data, 2**31)
    first = 4
    probe = whole.probe.copy()
    stream = Engine(
        data.intensities[:first],
        data.positions[:first],
        probe,
        data.obj.shape,
        options=whole.opts,
    )
    buffers = set()
    for lo in range(first, n, 4):
        hi = min(n, lo + 4)
        stream.append_frames(data.intensities[lo:hi], data.positions[lo:hi])
        buffers.add(id(stream._frame_buffer))
    assert stream.n_frames == n
    np.testing.assert_array_equal(stream.inten, whole.inten)
    np.testing.assert_array_equal(stream.corners_px, whole.corners_px)
    assert len(buffers) <= int(np.ceil(np.log2(n / first))) + 1
    for e in (whole, stream):
        run_chain(e, parse_algorithm("AP**5"))
    np.testing.assert_allclose(stream.deviance, whole.deviance, rtol=1e-5)
