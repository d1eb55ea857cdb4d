"""What the page shows, read from Tiled: runs, progress, reconstructions, stacks, spectra.

Every function takes a tiled client of the catalog root and returns plain JSON-ready values
or NumPy arrays; nothing here knows about HTTP. Missing things raise :class:`KeyError` with
a message naming them (the app turns it into a 404).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recon.scan import scan_positions
from services.worker.stack_analysis import STACK_KEY, indexed_results, result_nodes
from services.worker.tiled_io import RunReader, run_keys


def _jsonable(value: Any) -> Any:
    """Metadata made safe for JSON (NaN and infinity become None, arrays become lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run(client: Any, uid: str) -> Any:
    try:
        return client[uid]
    except KeyError:
        raise KeyError(f"no run {uid}") from None


def child(node: Any, key: str) -> Any:
    """``node[key]``, or None when there is no such child (one request, not two)."""
    try:
        return node[key]
    except KeyError:
        return None


def frames_landed(run: Any) -> int:
    """Camera frames of the run's primary stream already in Tiled.

    The frame array is read from the raw stream container, as bluesky's stream client adds
    requests (this runs at every look of the live watcher).
    """
    primary = child(run, "primary")
    if primary is None:
        return 0
    images = child(getattr(primary, "base", primary), "camera_image")
    return 0 if images is None else int(images.shape[0])


def run_summary(uid: str, run: Any) -> dict[str, Any]:
    """One line of the run list."""
    md = run.metadata
    start = dict(md.get("start") or {})
    stop = dict(md.get("stop") or {})
    geometry = dict(start.get("geometry") or {})
    per = int(geometry.get("points_per_ptychogram") or 0)
    n = int(start.get("n_ptychograms") or 1)
    return _jsonable(
        {
            "uid": uid,
            "scan_id": start.get("scan_id"),
            "plan_name": start.get("plan_name"),
            "sample": start.get("sample"),
            "time": start.get("time"),
            "energies": geometry.get("energies", []),
            "polarizations": geometry.get("polarizations", []),
            "n_ptychograms": n,
            "points_total": per * n,
            "state": stop.get("exit_status", "running") if stop else "running",
        }
    )


def list_runs(client: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` runs, newest first."""
    keys = run_keys(client)[-limit:]
    out = []
    for uid in reversed(keys):
        try:
            out.append(run_summary(uid, client[uid]))
        except KeyError:  # deleted meanwhile
            continue
    return out


def result_statuses(run: Any, key: str = "recon") -> list[dict[str, Any]]:
    """Metadata of each ptychogram's reconstruction of the run, by index."""
    return _statuses(result_nodes(run, key))


def _statuses(nodes: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    out = []
    for index, node in nodes:
        md = dict(node.metadata)
        md.pop("history", None)
        out.append({"index": index, **md})
    return _jsonable(out)


def run_detail(client: Any, uid: str, key: str = "recon") -> dict[str, Any]:
    """Geometry, dose, progress (frames landed of expected), results and stack state."""
    run = _run(client, uid)
    summary = run_summary(uid, run)
    start = dict(run.metadata.get("start") or {})
    geometry = dict(start.get("geometry") or {})
    recon = child(run, key)
    children = dict(recon.items()) if recon is not None else {}  # one listing, metadata included
    stack = children.get(STACK_KEY)
    return _jsonable(
        {
            **summary,
            "geometry": geometry,
            "dose": geometry.get("dose", {}),
            "frames": frames_landed(run),
            "results": _statuses(indexed_results(children.items())),
            "stack": None if stack is None else dict(stack.metadata),
        }
    )


def positions(client: Any, uid: str, index: int) -> dict[str, Any]:
    """Planned and measured probe positions (µm) of ptychogram ``index`` of a run.

    Returns
    -------
    ``{"planned": {"x": [...], "y": [...]}, "measured": {"x", "y", "order"}}``; planned
    positions come from the start document's geometry (raster or Fermat spiral about the
    scan centre), measured ones from the sample stage readbacks in the primary stream
    (empty for a ptychogram not measured yet).

    Raises
    ------
    KeyError
        If there is no such run, or ``index`` is outside the run's ``n_ptychograms``.
    """
    try:
        reader = RunReader(client, uid)
    except KeyError:
        raise KeyError(f"no run {uid}") from None
    n = int(reader.start.get("n_ptychograms") or 1)
    if not 0 <= index < n:
        raise KeyError(f"no ptychogram {index} in run {uid}: it has {n} (0..{n - 1})")
    g = reader.geometry
    planned: dict[str, list[float]] = {"x": [], "y": []}
    if g.get("area_m") and g.get("step_m"):
        pos = scan_positions(g.get("pattern", "raster"), g["area_m"], g["step_m"])
        cx, cy = (list(g.get("centre_um") or [0.0, 0.0]) + [0.0, 0.0])[:2]  # (x, y) in µm
        planned = {"x": (pos[:, 1] * 1e6 + cx).tolist(), "y": (pos[:, 0] * 1e6 + cy).tolist()}
    table = reader.table(columns=("ptychogram", "sample_fx", "sample_fy"))
    rows = np.flatnonzero(np.asarray(table["ptychogram"]) == index)
    measured = {
        "x": np.asarray(table["sample_fx"], dtype=np.float64)[rows].tolist(),
        "y": np.asarray(table["sample_fy"], dtype=np.float64)[rows].tolist(),
        "order": list(range(len(rows))),
    }
    return _jsonable({"index": index, "planned": planned, "measured": measured})


def result_node(client: Any, uid: str, index: int, key: str = "recon") -> Any:
    """The tiled container of ptychogram ``index``'s reconstruction."""
    try:
        return client[uid, key, f"p{index:04d}"]  # one request
    except KeyError:
        raise KeyError(f"no reconstruction of ptychogram {index} in run {uid}") from None


def result_image(client: Any, uid: str, index: int, kind: str, key: str = "recon"):
    """(image, pixel size in m, metadata) of a reconstruction.

    ``kind``: ``amplitude`` or ``phase`` of the object, ``probe`` (amplitude, modes summed).
    """
    arrays = {"amplitude": "object_amplitude", "phase": "object_phase", "probe": "probe_amplitude"}
    if kind not in arrays:
        raise KeyError(f"no image kind {kind!r}: use amplitude, phase or probe")
    node = result_node(client, uid, index, key)
    array = child(node, arrays[kind])
    if array is None:
        raise KeyError(f"ptychogram {index} of run {uid} has no {kind} yet")
    md = dict(node.metadata)
    image = np.asarray(array.read())
    return image, float(md.get("pixel_size_m") or 0.0), md


def llk_of(node: Any) -> list[float | None]:
    """Log-likelihood per iteration (the convergence curve) of a reconstruction's container
    (:func:`result_node`); empty when it has none."""
    try:
        values = node["llk"].read()
    except KeyError:
        return []
    return _jsonable(np.asarray(values, dtype=np.float64).tolist())


def stack_node(client: Any, uid: str, key: str = "recon") -> Any:
    """The tiled container of a run's stack analysis."""
    try:
        return client[uid, key, STACK_KEY]  # one request
    except KeyError:
        raise KeyError(f"run {uid} has no stack analysis yet") from None


def stack_map(client: Any, uid: str, name: str, i: int, key: str = "recon"):
    """(image, pixel size, energy, polarization or pair) of the stack's ``name`` map ``i``.

    ``name``: ``od`` or ``phase`` (one per ptychogram), ``xld`` or ``xmcd``.
    """
    if name not in ("od", "phase", "xld", "xmcd"):
        raise KeyError(f"no stack map {name!r}: use od, phase, xld or xmcd")
    node = stack_node(client, uid, key)
    maps = child(node, name)
    if maps is None:
        raise KeyError(f"run {uid} has no {name} maps")
    if not 0 <= i < maps.shape[0]:
        raise KeyError(f"{name} map {i} out of range (0..{maps.shape[0] - 1})")
    md = dict(node.metadata)
    if name in ("od", "phase"):
        energy = float(np.asarray(node["energies"].read())[i])
        tag = (md.get("polarizations") or [""] * (i + 1))[i]
    else:
        energy = float(md.get(f"{name}_energies", [math.nan] * (i + 1))[i])
        tag = "LV-LH" if name == "xld" else "CR-CL"
    return np.asarray(maps[i]), float(md.get("pixel_size_m") or 0.0), energy, tag


def _region(shape: tuple[int, int], box: tuple[float, float, float, float]) -> tuple[slice, ...]:
    """Array slices of a region given as fractions (x0, y0, x1, y1) of the image."""
    h, w = shape
    x0, y0, x1, y1 = box
    if not all(0.0 <= v <= 1.0 for v in box) or x1 <= x0 or y1 <= y0:
        raise ValueError("region must be 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    r0, r1 = int(y0 * h), max(int(y0 * h) + 1, int(math.ceil(y1 * h)))
    c0, c1 = int(x0 * w), max(int(x0 * w) + 1, int(math.ceil(x1 * w)))
    return slice(r0, min(r1, h)), slice(c0, min(c1, w))


def _series(energies, pols, values) -> list[dict[str, Any]]:
    out = []
    for pol in dict.fromkeys(pols):
        pick = [i for i, p in enumerate(pols) if p == pol]
        order = sorted(pick, key=lambda i: energies[i])
        out.append(
            {
                "polarization": pol,
                "energies": [float(energies[i]) for i in order],
                "od": [float(values[i]) for i in order],
            }
        )
    return _jsonable(out)


def spectrum(
    client: Any, uid: str, box: tuple[float, float, float, float], key: str = "recon"
) -> dict[str, Any]:
    """Optical density spectra of a region, one series per polarization.

    Uses the aligned stack (``od``) when the worker has analysed the run; before that, the
    finished reconstructions' amplitudes, ``OD = -ln(|O|^2 / I0)`` with I0 the 95th
    percentile of ``|O|^2`` of each image (not drift-corrected).

    Parameters
    ----------
    box : (x0, y0, x1, y1) fractions of the image width and height, from the top left
    """
    run = _run(client, uid)
    if key in run and STACK_KEY in run[key] and "od" in run[key][STACK_KEY]:
        node = run[key][STACK_KEY]
        od = np.asarray(node["od"].read(), dtype=np.float64)
        region = _region(od.shape[1:], box)
        energies = np.asarray(node["energies"].read()).tolist()
        pols = list(node.metadata.get("polarizations") or [""] * len(energies))
        values = [float(np.nanmean(img[region])) for img in od]
        return {"source": "stack", "series": _series(energies, pols, values)}
    done = [r for r in result_statuses(run, key) if r.get("status") == "done"]
    if not done:
        raise KeyError(f"run {uid} has no finished reconstruction yet")
    energies, pols, values = [], [], []
    for r in done:
        amp = np.asarray(run[key][f"p{r['index']:04d}"]["object_amplitude"].read(), np.float64)
        intensity = amp**2
        i0 = float(np.percentile(intensity, 95)) or 1.0
        od = -np.log(np.clip(intensity[_region(amp.shape, box)] / i0, 1e-6, None))
        energies.append(float(r.get("energy_ev") or 0.0))
        pols.append(str(r.get("polarization") or ""))
        values.append(float(np.mean(od)))
    return {"source": "results", "series": _series(energies, pols, values)}
