"""What the image viewer draws over an image, from a run's models and reflections (no Django).

Positions are pixels of one panel (x fast, y slow, centres at +0.5, as DIALS), so the
browser draws them in the image's own coordinates. An image number N covers the frames
z ∈ [N − 1, N) (DIALS's array frames). From the reflection table of the chosen run:

* ``strong``: strong spots whose bounding box spans the image (centroid and box);
* ``indexed``: indexed strong spots (index, refine) predicted on this image —
  calculated position (``xyzcal.px``) and Miller index;
* ``predicted``: every reflection the run's crystal model predicts on this image
  (index, refine: ``processing.geometry.prediction.predict_rotation`` over the scan,
  kept per run; integrate: the integrated reflections whose calculated centroid lies
  on it);
* ``shoeboxes``: integrated reflections whose shoebox spans the image, with their
  Miller index, how they were integrated (prf, sum, failed) and I/σ.

Resolution rings and the resolution under the pointer come from the experiment's beam
and detector models (``processing.geometry.frames``).
"""
from __future__ import annotations

import math

import numpy as np

from processing.geometry.frames import d_spacing, pixel_to_s1, s1_to_pixel
from processing.reflections import Flags

#: more markers than this per layer are cut (the strongest kept): a browser draws them every frame
MAX_MARKERS = 20000
NICE_D = (50, 30, 20, 15, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2.2, 2, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0,
          0.9, 0.8, 0.7, 0.6, 0.5)


def frame_of_image(experiment, image_number: int) -> tuple[int, int]:
    """(0-based reader index, array frame z) of ``image_number``; ValueError outside
    the sweep's images."""
    scan = experiment.scan
    first, last = scan.image_range if scan is not None else (1, 1)
    if not first <= int(image_number) <= last:
        raise ValueError(f"image {image_number} is not in this sweep (images {first}–{last})")
    return int(image_number) - first, int(image_number) - 1


def _r(a, digits: int = 1) -> list:
    return np.round(np.asarray(a, dtype=float), digits).tolist()


def _panel_rows(table, panel: int) -> np.ndarray:
    n = len(table)
    if "panel" not in table:
        return np.ones(n, bool) if panel == 0 else np.zeros(n, bool)
    return np.asarray(table["panel"]).astype(np.int64) == panel


def _flags(table) -> np.ndarray:
    return (np.asarray(table["flags"]).astype(np.uint64) if "flags" in table
            else np.zeros(len(table), np.uint64))


def _has(flags: np.ndarray, flag) -> np.ndarray:
    return (flags & np.uint64(int(flag))) != 0


def _bbox_on(table, z: int) -> np.ndarray:
    bbox = np.asarray(table["bbox"]).reshape(-1, 6)
    return (bbox[:, 4] <= z) & (z < bbox[:, 5])


def _cap(sel: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    idx = np.nonzero(sel)[0]
    if len(idx) > MAX_MARKERS:
        order = np.argsort(-weight[idx]) if weight is not None else np.arange(len(idx))
        idx = np.sort(idx[order[:MAX_MARKERS]])
    return idx


def strong_spots(table, z: int, panel: int) -> dict:
    """Strong spots on frame ``z``: centroids (x, y) and boxes (x0, y0, x1, y1)."""
    if table is None or not len(table) or "bbox" not in table or "xyzobs.px.value" not in table:
        return {"xy": [], "bbox": []}
    flags = _flags(table)
    strong = _has(flags, Flags.strong) if "flags" in table else np.ones(len(table), bool)
    sel = strong & _bbox_on(table, z) & _panel_rows(table, panel)
    weight = np.asarray(table["intensity.sum.value"], float) if "intensity.sum.value" in table else None
    idx = _cap(sel, weight)
    bbox = np.asarray(table["bbox"]).reshape(-1, 6)[idx]
    xyz = np.asarray(table["xyzobs.px.value"]).reshape(-1, 3)[idx]
    return {"xy": _r(xyz[:, :2]), "bbox": bbox[:, [0, 2, 1, 3]].astype(int).tolist()}


def indexed_spots(table, z: int, panel: int) -> dict:
    """Indexed spots whose calculated centroid is on frame ``z``: xyzcal (x, y), Miller
    index, the observed centroid and the lattice (experiment id)."""
    empty = {"xy": [], "hkl": [], "obs": [], "lattice": []}
    if table is None or not len(table) or "miller_index" not in table or "xyzcal.px" not in table:
        return empty
    hkl = np.asarray(table["miller_index"]).reshape(-1, 3)
    cal = np.asarray(table["xyzcal.px"]).reshape(-1, 3)
    ids = np.asarray(table["id"]).astype(np.int64) if "id" in table else np.zeros(len(table), np.int64)
    sel = (np.any(hkl != 0, axis=1) & (ids >= 0) & np.all(np.isfinite(cal), axis=1)
           & (np.floor(cal[:, 2]) == z) & _panel_rows(table, panel))
    idx = _cap(sel)
    obs = (np.asarray(table["xyzobs.px.value"]).reshape(-1, 3)[idx, :2] if "xyzobs.px.value" in table
           else cal[idx, :2])
    return {"xy": _r(cal[idx, :2]), "hkl": hkl[idx].astype(int).tolist(), "obs": _r(obs),
            "lattice": ids[idx].tolist()}


def integrated(table, z: int, panel: int) -> tuple[dict, dict]:
    """(shoeboxes spanning frame ``z``, predictions centred on it) of an integrated table."""
    empty = ({"bbox": [], "xy": [], "hkl": [], "status": [], "i_sigma": [], "lattice": []},
             {"xy": [], "hkl": [], "lattice": []})
    need = ("bbox", "xyzcal.px", "miller_index")
    if table is None or not len(table) or any(c not in table for c in need):
        return empty
    flags = _flags(table)
    hkl = np.asarray(table["miller_index"]).reshape(-1, 3)
    cal = np.asarray(table["xyzcal.px"]).reshape(-1, 3)
    ids = np.asarray(table["id"]).astype(np.int64) if "id" in table else np.zeros(len(table), np.int64)
    on_panel = _panel_rows(table, panel)
    prf, summed = _has(flags, Flags.integrated_prf), _has(flags, Flags.integrated_sum)
    def column(name):
        return np.asarray(table[name], float) if name in table else np.full(len(table), np.nan)

    # I/σ of the profile-fitted intensity where there is one, else of the summed one
    value = np.where(prf, column("intensity.prf.value"), column("intensity.sum.value"))
    var = np.where(prf, column("intensity.prf.variance"), column("intensity.sum.variance"))
    with np.errstate(invalid="ignore", divide="ignore"):
        i_sigma = np.where(var > 0, value / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)
    sel = _bbox_on(table, z) & on_panel
    idx = _cap(sel, np.nan_to_num(i_sigma, nan=-1e9))
    bbox = np.asarray(table["bbox"]).reshape(-1, 6)[idx]
    status = np.where(prf[idx], "prf", np.where(summed[idx], "sum", "failed"))
    boxes = {"bbox": bbox[:, [0, 2, 1, 3]].astype(int).tolist(), "xy": _r(cal[idx, :2]),
             "hkl": hkl[idx].astype(int).tolist(), "status": status.tolist(),
             "i_sigma": [None if not math.isfinite(v) else round(float(v), 1) for v in i_sigma[idx]],
             "lattice": ids[idx].tolist()}
    centre = _cap(on_panel & np.all(np.isfinite(cal), axis=1) & (np.floor(cal[:, 2]) == z))
    pred = {"xy": _r(cal[centre, :2]), "hkl": hkl[centre].astype(int).tolist(), "lattice": ids[centre].tolist()}
    return boxes, pred


def scan_predictions(experiments) -> list[dict | None]:
    """What each experiment's crystal predicts over its whole scan (``predict_rotation``:
    every index to the detector's corner resolution, the space group's absences left
    out): per experiment ``{"xy", "z", "hkl", "panel"}`` or None (no crystal). The costly
    part of the predictions layer: the viewer keeps it per run and sweep."""
    from processing.geometry.prediction import predict_rotation

    out = []
    for e in experiments:
        if e.crystal is None or e.scan is None or e.goniometer is None or e.scan.is_still:
            out.append(None)
            continue
        p = predict_rotation(e.crystal.A, e.beam, e.detector, e.goniometer, e.scan, space_group=e.crystal.space_group)
        ok = np.all(np.isfinite(p["xyzcal.px"]), axis=1)
        out.append({"xy": p["xyzcal.px"][ok, :2], "z": p["xyzcal.px"][ok, 2], "hkl": p["miller_index"][ok],
                    "panel": np.asarray(p["panel"]).astype(np.int64)[ok]})
    return out


def model_predictions(predictions: list[dict | None], z: int, panel: int) -> dict:
    """The reflections of :func:`scan_predictions` centred on frame ``z`` of the panel."""
    xy, hkl, lattice = [], [], []
    for k, p in enumerate(predictions):
        if p is None:
            continue
        sel = (p["panel"] == panel) & (np.floor(p["z"]) == z)
        xy.append(p["xy"][sel])
        hkl.append(p["hkl"][sel])
        lattice.append(np.full(int(sel.sum()), k))
    if not xy:
        return {"xy": [], "hkl": [], "lattice": []}
    xy, hkl, lattice = np.concatenate(xy), np.concatenate(hkl), np.concatenate(lattice)
    idx = _cap(np.ones(len(xy), bool))
    return {"xy": _r(xy[idx]), "hkl": hkl[idx].astype(int).tolist(), "lattice": lattice[idx].tolist()}


def _nice(d: float) -> float:
    return float(f"{d:.2g}") if d < 10 else float(round(d))


def resolution_rings(experiment, panel: int, n_rings: int = 5, n_points: int = 240) -> list[dict]:
    """About ``n_rings`` rings evenly spaced in radius out to the panel's corner, at
    rounded resolutions: ``{"d": Å, "points": [[x, y] or None …]}`` (None breaks the
    line where the ring leaves the panel)."""
    beam, detector = experiment.beam, experiment.detector
    if beam is None or detector is None:
        return []
    s0 = np.asarray(beam.s0, float)
    wavelength = 1.0 / np.linalg.norm(s0)
    p = detector[panel]
    nx, ny = p.image_size
    corners = np.array([[0, 0], [nx, 0], [0, ny], [nx, ny]], float)
    d_corner = float(d_spacing(pixel_to_s1(p, beam, corners), s0).min())
    tt_max = 2 * math.asin(min(1.0, wavelength / (2 * d_corner)))
    ds = []
    for k in range(1, n_rings + 1):
        d = _nice(wavelength / (2 * math.sin(tt_max * k / (n_rings + 0.5) / 2)))
        if d not in ds and d >= d_corner:
            ds.append(d)
    b = s0 / np.linalg.norm(s0)
    e1 = np.cross(b, [1.0, 0.0, 0.0] if abs(b[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(b, e1)
    phi = np.linspace(0.0, 2 * math.pi, n_points + 1)
    rings = []
    for d in ds:
        tt = 2 * math.asin(wavelength / (2 * d))
        s1 = (math.cos(tt) * b[None, :] + math.sin(tt) * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)) \
            / wavelength
        pid, px = s1_to_pixel(detector, s1)
        on = (pid == panel) & np.all(np.isfinite(px), axis=1)
        points = [[round(float(x), 1), round(float(y), 1)] if ok else None for (x, y), ok in zip(px, on)]
        if any(on):
            rings.append({"d": d, "points": points})
    return rings


def beam_centre(experiment, panel: int):
    try:
        x, y = experiment.detector[panel].get_beam_centre_px(experiment.beam.s0)
    except Exception:  # noqa: BLE001 - a beam parallel to the panel has no centre
        return None
    return [round(float(x), 2), round(float(y), 2)]


def resolution_at(experiment, panel: int, x: float, y: float) -> float | None:
    """d (Å) at pixel position (x, y) of the panel."""
    if experiment.beam is None or experiment.detector is None:
        return None
    d = float(d_spacing(pixel_to_s1(experiment.detector[panel], experiment.beam, [[x, y]]),
                        experiment.beam.s0)[0])
    return d if math.isfinite(d) else None


def geometry(experiment, panel: int) -> dict:
    """The few numbers the page shows about the panel (size, pixel, λ, distance)."""
    p = experiment.detector[panel]
    return {"image_size": [int(v) for v in p.image_size], "pixel_size": [float(v) for v in p.pixel_size],
            "wavelength": float(experiment.beam.wavelength) if experiment.beam is not None else None,
            "distance": float(p.distance), "trusted_range": [float(v) for v in p.trusted_range]}
