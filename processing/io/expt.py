"""DIALS experiment-list files (.expt, JSON)."""
from __future__ import annotations

import json

from ..errors import XtalError
from .files import read_bytes, write_bytes_atomic
from ..models import (Beam, Crystal, Detector, Experiment, ExperimentList, Goniometer,
                      ImageSource, Scan)

_MODELS = (("beam", Beam), ("detector", Detector), ("goniometer", Goniometer),
           ("scan", Scan), ("crystal", Crystal))


def experiments_from_dict(d: dict) -> ExperimentList:
    """Build an ExperimentList from DIALS's JSON structure (shared models stay shared)."""
    if d.get("__id__") != "ExperimentList":
        raise XtalError("not a DIALS experiment list (no '__id__': 'ExperimentList')")
    pools = {name: [cls.from_dict(m) for m in d.get(name, [])] for name, cls in _MODELS}
    imagesets = [ImageSource.from_dict(m) for m in d.get("imageset", [])]
    out = ExperimentList()
    for e in d.get("experiment", []):
        kw = {}
        for name, _ in _MODELS:
            idx = e.get(name)
            kw[name] = pools[name][idx] if idx is not None else None
        if e.get("imageset") is not None:
            kw["imageset"] = imagesets[e["imageset"]]
        for name in ("profile", "scaling_model"):
            idx = e.get(name)
            kw[name] = d[name][idx] if idx is not None and name in d else None
        out.append(Experiment(identifier=e.get("identifier", ""), **kw))
    return out


def experiments_to_dict(experiments: ExperimentList) -> dict:
    """DIALS's JSON structure; a model shared by experiments is written once."""
    experiments = ExperimentList(experiments)
    kinds = [name for name, _ in _MODELS] + ["imageset", "profile", "scaling_model"]
    pools = {k: experiments.models(k) for k in kinds}
    index = {k: {id(m): i for i, m in enumerate(pools[k])} for k in kinds}
    d: dict = {"__id__": "ExperimentList", "experiment": []}
    for e in experiments:
        entry = {"__id__": "Experiment", "identifier": e.identifier}
        for k in ("beam", "detector", "goniometer", "scan", "crystal", "profile",
                  "imageset", "scaling_model"):
            m = getattr(e, k)
            if m is not None:
                entry[k] = index[k][id(m)]
        d["experiment"].append(entry)
    d["imageset"] = [m.to_dict() for m in pools["imageset"]]
    for k in ("beam", "detector", "goniometer", "scan", "crystal"):
        d[k] = [m.to_dict() for m in pools[k]]
    d["profile"] = list(pools["profile"])
    d["scaling_model"] = list(pools["scaling_model"])
    return d


def read_experiments(path: str) -> ExperimentList:
    """Read a DIALS .expt file; bad input raises XtalError with one clear message."""
    raw = read_bytes(path, "experiment list")
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise XtalError(f"{path}: not a DIALS experiment list (not JSON, or truncated)") from None
    if not isinstance(d, dict):
        raise XtalError(f"{path}: not a DIALS experiment list")
    try:
        return experiments_from_dict(d)
    except XtalError as e:
        raise XtalError(f"{path}: {e}") from None
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise XtalError(f"{path}: malformed experiment list ({type(e).__name__}: {e})") from None


def write_experiments(path: str, experiments: ExperimentList) -> None:
    """Write a DIALS .expt atomically (temporary file in the same folder, then rename)."""
    text = json.dumps(experiments_to_dict(experiments), indent=2)
    write_bytes_atomic(path, text.encode(), "experiment list")
