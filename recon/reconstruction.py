"""The :class:`Reconstruction` driver and the result file (HDF5) writer and reader.

Typical use::

    rec = Reconstruction(read_cxi("scan.cxi"), algorithm="AP**150,ML**50", backend="auto")
    rec.run()                       # or rec.step(10) repeatedly, e.g. from a streaming worker
    rec.add_frames(frames, positions_m)   # more frames arrived: keep going with all of them
    write_result("out.h5", rec.result())

The result file holds ``object`` (complex64, 2-D), ``probe`` (complex64, modes x ny x nx),
``positions`` (N x 2 probe centres in object pixels, y then x), ``llk`` (one value per
iteration: the model's Poisson deviance ``2 sum [M - I + I ln(I/M)]`` divided by the number of
unmasked pixels it is summed over, :func:`recon.deviance.poisson_deviance`) and the attributes
``pixel_size_m``, ``energy_eV``, ``algorithm``, ``iterations``, ``backend``, ``seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.algorithm_chain import check_algorithm, is_auto, parse_algorithm, run_stage
from recon.algorithms import Engine
from recon.auto_chain import AutoChoice, choose_chain, measure
from recon.backend import resolve_backend, to_numpy
from recon.cxi import CXIError, Ptychogram
from recon.engine_options import EngineOptions
from recon.geometry import wavelength_m
from recon.prepare import Calibration, PreparedData, prepare, prepare_more
from recon.probe_focus import propagate_probe, search_focus


@dataclass
class ReconstructionResult:
    """A finished (or partial) reconstruction as NumPy arrays.

    Attributes
    ----------
    object : (H, W) complex64
    probe : (K, n, n) complex64, centred
    positions : (N, 2) float64 probe centres in object pixels (row, col)
    llk : (iterations,) float64 Poisson deviance per unmasked pixel of each iteration (the
        name of the result file's dataset; see :attr:`Reconstruction.llk`)
    pixel_size_m, energy_ev, algorithm, iterations, backend, seconds : run metadata
    illumination : (H, W) float32 summed probe intensity over the scan
    messages : notes such as a DM fallback
    """

    object: np.ndarray
    probe: np.ndarray
    positions: np.ndarray
    llk: np.ndarray
    pixel_size_m: float
    energy_ev: float
    algorithm: str
    iterations: int
    backend: str
    seconds: float
    illumination: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)


class Reconstruction:
    """Reconstruct a ptychogram, a few iterations at a time if wanted.

    Parameters
    ----------
    data : a :class:`recon.cxi.Ptychogram` (prepared here) or :class:`PreparedData`
    algorithm : chain such as ``"AP**150,ML**50"`` run by :meth:`run`, or ``"auto"``: a
        chain chosen from the data (:mod:`recon.auto_chain`; chosen again when frames are
        added before the chain starts, at its first step), named in :attr:`algorithm` and in
        the messages
    probe_modes : incoherent probe modes (only when ``data`` is a Ptychogram)
    backend : ``auto``, ``numpy`` or ``cupy``
    frame_size, binning, threshold : passed to :func:`recon.prepare.prepare`
    seed : seed of the extra probe modes
    options : :class:`recon.engine_options.EngineOptions`
    """

    def __init__(
        self,
        data: Ptychogram | PreparedData,
        algorithm: str = "AP**100",
        probe_modes: int = 1,
        backend: str = "auto",
        frame_size: int | None = None,
        binning: int = 1,
        threshold: float = 0.5,
        seed: int = 0,
        options: EngineOptions | None = None,
    ) -> None:
        self.auto = is_auto(check_algorithm(algorithm))
        self.auto_choice: AutoChoice | None = None
        self.steps = [] if self.auto else parse_algorithm(algorithm)
        self.algorithm = algorithm
        self.xp = resolve_backend(backend)
        self.backend = "cupy" if self.xp is not np else "numpy"
        self.calib: Calibration | None = None
        self.focus_half_range_m: float | None = None
        if isinstance(data, Ptychogram):
            raw = data
            data, self.calib = prepare(
                data,
                frame_size=frame_size,
                binning=binning,
                threshold=threshold,
                probe_modes=probe_modes,
                seed=seed,
            )
            if self.auto and data.report.get("probe_source") == "zone_plate":
                self.focus_half_range_m = focus_range(raw)
        self.data = data
        xp = self.xp
        self.engine = Engine(
            xp.asarray(data.intensities),
            xp.asarray(data.corners_px),
            xp.asarray(data.probe),
            data.obj_shape,
            mask=xp.asarray(data.mask),
            scale=xp.asarray(data.scale),
            options=options,
        )
        self.origin_px = np.asarray(data.origin_px, dtype=np.float64)
        self.seconds = 0.0
        self._stage = 0
        self._done_in_stage = 0
        self._base_options = self.engine.opts
        self._choice_stale = False
        if self.auto:
            self._choose_chain()

    def _choose_chain(self) -> None:
        """Choose the ``auto`` chain from the frames so far (before the chain starts); its
        options replace those given at construction (``refine_positions`` is always on)."""
        eng = self.engine
        m = measure(eng.inten, to_numpy(~eng.good), to_numpy(eng.corners_px), to_numpy(eng.probe))
        choice = choose_chain(m)
        self.auto_choice = choice
        self._choice_stale = False
        self.steps = parse_algorithm(choice.chain)
        self.algorithm = choice.chain
        eng.opts = replace(self._base_options, **choice.options)
        eng.messages[:] = [msg for msg in eng.messages if not msg.startswith("auto: ")]
        eng.messages.insert(0, choice.message())

    # ------------------------------------------------------------------ state
    @property
    def iterations(self) -> int:
        return self.engine.iteration

    @property
    def total_iterations(self) -> int:
        """Iterations of the whole algorithm chain."""
        return sum(n for _, n in self.steps)

    @property
    def finished(self) -> bool:
        return self._stage >= len(self.steps)

    @property
    def object(self) -> np.ndarray:
        """(H, W) complex64 object (host copy)."""
        return to_numpy(self.engine.obj)

    @property
    def probe(self) -> np.ndarray:
        """(K, n, n) complex64 probe modes (host copy)."""
        return to_numpy(self.engine.probe)

    @property
    def llk(self) -> list[float]:
        """Normalised Poisson deviance of each iteration so far (see :attr:`Engine.deviance`).

        ``2 sum [M - I + I ln(I/M)] / N`` over the unmasked pixels of an evenly spread subset
        of frames, ``N`` their count (:func:`recon.deviance.poisson_deviance`): about 1 at
        convergence on Poisson-noisy data. Named ``llk`` for the result file's dataset.
        """
        return list(self.engine.deviance)

    @property
    def messages(self) -> list[str]:
        return list(self.engine.messages)

    # ------------------------------------------------------------------ iterating
    def step(self, n: int = 1, algorithm: str | None = None) -> list[float]:
        """Run ``n`` iterations: of ``algorithm`` if given, else continue the chain.

        Returns
        -------
        the normalised Poisson deviance of each iteration run (see :attr:`llk`)
        """
        start = len(self.engine.deviance)
        t0 = time.perf_counter()
        if self.focus_half_range_m and self.engine.iteration == 0:
            self._search_focus()  # before the first iteration, live or not
        if algorithm is None and self._choice_stale:
            self._choose_chain()  # frames came since the last choice: choose from them all
        if algorithm is not None:
            run_stage(self.engine, algorithm, n, new_stage=False)
        else:
            left = n
            while left > 0 and not self.finished:
                name, count = self.steps[self._stage]
                k = min(left, count - self._done_in_stage)
                run_stage(self.engine, name, k, new_stage=self._done_in_stage == 0)
                self._done_in_stage += k
                left -= k
                if self._done_in_stage >= count:
                    self._stage += 1
                    self._done_in_stage = 0
        self._sync()
        self.seconds += time.perf_counter() - t0
        return self.engine.deviance[start:]

    def run(
        self, n: int | None = None, callback: Callable[[Reconstruction], None] | None = None
    ) -> ReconstructionResult:
        """Run the rest of the chain, or ``n`` more iterations (past the end of the chain
        with its last algorithm), calling ``callback(self)`` after each; returns
        :meth:`result`."""
        if n is None:
            while not self.finished:
                self.step(1)
                if callback is not None:
                    callback(self)
        else:
            for _ in range(n):
                if self.finished:
                    self.step(1, self.steps[-1][0])
                else:
                    self.step(1)
                if callback is not None:
                    callback(self)
        return self.result()

    def _sync(self) -> None:
        if self.backend == "cupy":
            import cupy  # type: ignore[import-not-found]

            cupy.cuda.Device().synchronize()

    def _search_focus(self) -> None:
        """Move the probe model to the defocus the data prefer (:mod:`recon.probe_focus`),
        once, before the first iteration of an ``auto`` reconstruction (live or not)."""
        eng = self.engine
        lam = wavelength_m(self.data.energy_ev)
        found = search_focus(eng, self.focus_half_range_m, lam, self.data.pixel_size_m)
        self.focus_half_range_m = None
        if found.dz_m != 0.0:
            eng.probe = propagate_probe(eng.probe, found.dz_m, lam, self.data.pixel_size_m)
            eng.invalidate_probe()
        eng.messages.append(found.message())

    # ------------------------------------------------------------------ streaming
    def add_frames(
        self,
        frames: np.ndarray,
        positions_m: np.ndarray | None = None,
        corners_px: np.ndarray | None = None,
    ) -> int:
        """Add frames taken after the reconstruction started.

        Parameters
        ----------
        frames : (M, ny, nx) raw frames like the first ones (or already prepared (M, n, n)
            photons in FFT order when the reconstruction was built from PreparedData)
        positions_m : (M, 2) probe positions (y, x) in metres, same frame as the first ones
        corners_px : (M, 2) top-left patch corners in object pixels instead

        Returns
        -------
        the number of frames now used
        """
        eng = self.engine
        xp = self.xp
        if self.calib is not None:
            inten, bad = prepare_more(frames, self.calib)
            if bad.any():
                self.calib.mask |= bad
                eng.good &= ~xp.asarray(np.fft.ifftshift(bad))
        else:
            inten = np.asarray(frames, dtype=np.float32)
            if inten.ndim == 2:
                inten = inten[None]
        if inten.shape[1:] != tuple(eng.frame_shape):
            raise CXIError(f"new frames have shape {inten.shape[1:]}, expected {eng.frame_shape}")
        if corners_px is None:
            if positions_m is None:
                raise ValueError("give positions_m or corners_px for the new frames")
            corners_px = (
                np.asarray(positions_m, np.float64).reshape(-1, 2) / self.data.pixel_size_m
                + self.origin_px
            )
        new_pos = np.asarray(corners_px, np.float64).reshape(-1, 2)
        if len(new_pos) != len(inten):
            raise ValueError(f"{len(inten)} frames but {len(new_pos)} positions")
        # grow the object when a new patch falls outside it
        n = eng.frame_shape[0]
        margin = 8
        lo = new_pos.min(axis=0)
        hi = new_pos.max(axis=0) + n
        before = np.maximum(0, np.ceil(margin - lo)).astype(int)
        after = np.maximum(0, np.ceil(hi + margin + 1 - np.array(eng.obj_shape))).astype(int)
        if before.any() or after.any():
            eng.pad_object((int(before[0]), int(before[1])), (int(after[0]), int(after[1])))
            self.origin_px = self.origin_px + before
            new_pos = new_pos + before
        eng.append_frames(xp.asarray(inten), xp.asarray(new_pos))
        if self.auto and self._stage == 0 and self._done_in_stage == 0:
            self._choice_stale = True  # chosen again at the chain's first step
        return eng.n_frames

    # ------------------------------------------------------------------ output
    def result(self) -> ReconstructionResult:
        """Host copies of object, probe, positions (probe centres) and convergence."""
        eng = self.engine
        n = np.array(eng.frame_shape) // 2
        return ReconstructionResult(
            object=self.object,
            probe=self.probe,
            positions=to_numpy(eng.corners_px) + n,
            llk=np.asarray(eng.deviance, dtype=np.float64),
            pixel_size_m=float(self.data.pixel_size_m),
            energy_ev=float(self.data.energy_ev),
            algorithm=self.algorithm,
            iterations=eng.iteration,
            backend=self.backend,
            seconds=self.seconds,
            illumination=to_numpy(eng.illumination()),
            messages=list(eng.messages),
        )


def focus_range(data: Ptychogram) -> float | None:
    """Half range (m) of the ``auto`` focus search, or None when there is none to do.

    Searched: a zone-plate probe model (from the Ptychogram's ``zone_plate``) whose defocus
    is more than two depths of focus (``4 dr^2 / lambda``); half range 25 % of it.
    """
    zp = data.zone_plate or {}
    if "outermost_zone_width" not in zp:
        return None
    dr = float(zp["outermost_zone_width"])
    defocus = abs(float(zp.get("defocus", 0.0)))
    depth = 4 * dr**2 / wavelength_m(data.energy_ev)
    return 0.25 * defocus if defocus > 2 * depth else None


def write_result(path: str | Path, result: ReconstructionResult) -> Path:
    """Write a reconstruction result file (HDF5); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h:
        h.create_dataset("object", data=np.asarray(result.object, np.complex64))
        h.create_dataset("probe", data=np.asarray(result.probe, np.complex64))
        h.create_dataset("positions", data=np.asarray(result.positions, np.float64))
        h.create_dataset("llk", data=np.asarray(result.llk, np.float64))
        if result.illumination is not None:
            h.create_dataset("illumination", data=np.asarray(result.illumination, np.float32))
        h.attrs["pixel_size_m"] = float(result.pixel_size_m)
        h.attrs["energy_eV"] = float(result.energy_ev)
        h.attrs["algorithm"] = result.algorithm
        h.attrs["iterations"] = int(result.iterations)
        h.attrs["backend"] = result.backend
        h.attrs["seconds"] = float(result.seconds)
        if result.messages:
            h.attrs["messages"] = "\n".join(result.messages)
    return path


def read_result(path: str | Path) -> ReconstructionResult:
    """Read a file written by :func:`write_result`.

    Raises
    ------
    CXIError
        If the file is missing or lacks a dataset or attribute.
    """
    path = Path(path)
    if not path.is_file():
        raise CXIError(f"no such file: {path}")
    try:
        with h5py.File(path, "r") as h:
            missing = [k for k in ("object", "probe", "positions", "llk") if k not in h]
            if missing:
                raise CXIError(f"{path} is not a result file: missing {', '.join(missing)}")
            a = h.attrs
            msgs = a.get("messages", "")
            return ReconstructionResult(
                object=h["object"][()],
                probe=h["probe"][()],
                positions=h["positions"][()],
                llk=h["llk"][()],
                pixel_size_m=float(a["pixel_size_m"]),
                energy_ev=float(a["energy_eV"]),
                algorithm=str(a["algorithm"]),
                iterations=int(a["iterations"]),
                backend=str(a["backend"]),
                seconds=float(a["seconds"]),
                illumination=h["illumination"][()] if "illumination" in h else None,
                messages=str(msgs).splitlines() if msgs else [],
            )
    except OSError as err:
        raise CXIError(f"{path} is not an HDF5 file ({err})") from None
    except KeyError as err:
        raise CXIError(f"{path} lacks attribute {err}") from None


def reconstruct(
    data: Ptychogram | PreparedData, algorithm: str = "AP**100", **kwargs: Any
) -> ReconstructionResult:
    """One call: build a :class:`Reconstruction`, run the chain, return the result."""
    return Reconstruction(data, algorithm=algorithm, **kwargs).run()
