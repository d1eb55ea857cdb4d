"""Add what a scan actually exposed to its sample's dose map (a RunEngine subscriber).

:class:`DoseRecorder` follows the documents of every run whose plan names a ``sample`` with
a material and thickness (given or from its preset): each saved ``primary`` event (or a fly
scan's event page) is one exposure at its measured fine stage position (plus the coarse
stage read when the run started), at its measured energy. Each ptychogram's exposures are
added to the ledger (:class:`services.dose_ledger.DoseLedger`) when the next ptychogram
starts and at the stop document, so an aborted or failed scan adds exactly what it exposed.
The flux is the one the plan was given, or else the mean I0 recorded with the frames of
that ptychogram. Dark frames (shutter closed) and refused frames (dropped, no event) add
nothing.

A ledger that cannot be written (Tiled away) keeps the exposures for the next try and logs
one warning; the scan is not disturbed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from recon.dose import single_exposure_dose_gray

log = logging.getLogger("sptycho.dose")

#: Event data keys read: fine stage x, y (um), energy (eV), I0 (ph/s), ptychogram index.
KEYS = ("sample_fx", "sample_fy", "optics_energy", "beam_i0", "ptychogram")


class DoseRecorder:
    """RunEngine subscriber adding each run's exposures to the dose ledger.

    Parameters
    ----------
    ledger : the :class:`services.dose_ledger.DoseLedger` (anything with ``add``)
    """

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.run: dict[str, Any] | None = None
        self.rows: list[tuple[float, ...]] = []
        self.primary: str | None = None
        self.added = 0  # exposures written to the ledger (all runs)

    def __call__(self, name: str, doc: dict) -> None:
        try:
            getattr(self, f"_{name}", lambda doc: None)(doc)
        except Exception:  # noqa: BLE001 - the ledger never stops a scan
            log.exception("dose recorder: %s document not taken", name)

    # ---------------------------------------------------------------- documents
    def _start(self, doc: dict) -> None:
        args = dict(doc.get("plan_args") or {})
        self.run, self.rows, self.primary = None, [], None
        if not (args.get("sample") and args.get("material") and args.get("thickness_m")):
            return
        coarse = list(doc.get("sample_coarse_um") or [0.0, 0.0])
        self.run = {
            "uid": doc["uid"],
            "sample": args["sample"],
            "material": args["material"],
            "thickness_m": float(args["thickness_m"]),
            "flux_ph_s": args.get("flux_ph_s"),
            "spot_m": float(args["spot_m"]),
            "exposure_s": float(args["exposure_s"]),
            "coarse_um": (float(coarse[0]), float(coarse[1])),
        }

    def _descriptor(self, doc: dict) -> None:
        if self.run is not None and doc.get("name") == "primary":
            self.primary = doc["uid"]

    def _event(self, doc: dict) -> None:
        if self.run is None or doc.get("descriptor") != self.primary:
            return
        data = doc["data"]
        self._take([tuple(float(data.get(k, np.nan)) for k in KEYS)])

    def _event_page(self, doc: dict) -> None:
        if self.run is None or doc.get("descriptor") != self.primary:
            return
        data = doc["data"]
        n = len(doc.get("seq_num", ()))
        columns = [np.asarray(data.get(k, [np.nan] * n), dtype=np.float64) for k in KEYS]
        self._take(list(zip(*columns, strict=True)))

    def _stop(self, doc: dict) -> None:
        if self.run is not None:
            self.flush()
            if self.rows:
                log.error(
                    "dose of run %s (%d exposures of sample %r) not recorded: Tiled did not "
                    "take it",
                    self.run["uid"][:8],
                    len(self.rows),
                    self.run["sample"],
                )
        self.run, self.rows, self.primary = None, [], None

    # ---------------------------------------------------------------- ledger
    def _take(self, rows: list[tuple[float, ...]]) -> None:
        if self.rows and rows and rows[0][4] != self.rows[-1][4]:
            self.flush()  # a new ptychogram: the last one is complete
        self.rows.extend(rows)

    def flush(self) -> None:
        """Add the exposures taken so far to the ledger (kept on failure)."""
        if self.run is None or not self.rows:
            return
        r = self.run
        table = np.asarray(self.rows, dtype=np.float64)
        fx, fy, energy, i0, index = table.T
        doses = np.zeros(len(table))
        for k in np.unique(index):
            rows = index == k
            e = float(np.nanmean(energy[rows]))
            flux = r["flux_ph_s"] or float(np.nanmean(i0[rows]))
            if not np.isfinite(flux) or not np.isfinite(e):
                continue  # nothing known of this ptychogram's beam: no dose
            doses[rows] = single_exposure_dose_gray(
                r["material"], r["thickness_m"], flux * r["exposure_s"], r["spot_m"], e
            )
        positions = np.stack([fy + r["coarse_um"][1], fx + r["coarse_um"][0]], axis=1) * 1e-6
        keep = np.isfinite(positions).all(axis=1) & (doses > 0)
        try:
            self.ledger.add(r["sample"], positions[keep], r["spot_m"], doses[keep], r["uid"])
        except Exception as err:  # noqa: BLE001 - Tiled away: try again at the next flush
            log.warning("dose ledger not written (kept for the next try): %s", err)
            return
        self.added += int(keep.sum())
        self.rows = []
