"""Systematic absences: which chiral space group of a Patterson group the data support.

The screw-axis analysis of dials.symmetry (``dials.algorithms.symmetry.absences``), the
"direct" method:

1. The screw axes worth testing follow from the candidate space groups: along each cell
   axis (axes the Laue group relates, e.g. a and b in 4/mmm or a, b, c in cubic groups,
   are pooled) every period of allowed axial reflections that some candidate has and the
   lattice centring alone does not gives one test — 21a/21b/21c, 31c, 41c and 42c, 61c,
   62c and 63c, 41a and 42a (cubic), ….
2. The axial reflections (h00, 0k0, 00l) are merged over Friedel mates, over the
   pooled axes and over repeated observations: merged I/σ = Σ(I/σ)/√m for m
   observations (the equal-σ merge, since only I/σ reaches this module). Reflections
   the lattice centring removes are left out. Those with n ≡ 0 (mod repeat) are
   expected present, the rest expected absent if the screw is there.
3. z_abs = ⟨I/σ⟩ of the expected-absent ones over a standard error of 1 (dials' choice:
   the errors are correlated), z_pres likewise; Φ is the normal CDF and
   z_c = Φ⁻¹(0.95) = 1.645. The axis score (probability of the screw) is
     Φ(z_pres)                  if z_abs ≤ z_c and z_pres > z_c        → present
     (1 − Φ(z_abs))·Φ(z_pres)   if z_abs > z_c and ⟨I/σ⟩_pres ≤ 20 ⟨I/σ⟩_abs → absent
   and when z_abs > z_c but ⟨I/σ⟩_pres > 20 ⟨I/σ⟩_abs the strongest expected-absent
   reflection is dropped as a suspected outlier and the test repeated; otherwise 0
   (undetermined). Fewer than MIN_REFLECTIONS on either side: score 0, "not enough data".
4. Each candidate has, per test, the condition True (its axial period is the test's
   repeat), False (the test's repeat is a multiple of its period: it expects reflections
   the group has) or "pass" (not decided by this test, as 42c for P 41 or 62c for
   P 63). A candidate's score is Π s over True, Π (1 − s) over False; the highest wins,
   ties to the first (the group without the screw, as dials lists them).
5. Candidates agreeing with every decided test (present where True, absent where False)
   and with the chosen group cannot be told apart: enantiomorphs (P 41/P 43), groups
   whose screw absences coincide with the centring's (I 2 3/I 21 3), or groups that
   differ only on axes without a verdict. The note names them, as dials.symmetry does.

Orthorhombic P candidates are completed with their other axis settings (P 21 2 2,
P 2 21 21, …) so a screw along a or b is found in the cell as indexed, as dials does.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import gemmi
import numpy as np

from .correlations import unpack_keys
from .data import hkl_keys

SIGNIFICANCE_LEVEL = 0.95
MIN_REFLECTIONS = 2  # per side (expected absent, expected present) for a verdict
PRESENT_OVER_ABSENT = 20.0  # dials' sanity check: most intensity in the expected channel
_AXIS_NAMES = "abc"
_PERMUTED_SETTINGS = ("cab", "bca", "ba-c", "a-cb", "-cba")
_PERIOD_PROBE = 12  # axial indices 1..12 fix every period (1, 2, 3, 4, 6)


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _rotations(sg) -> list[np.ndarray]:
    return [np.array(op.rot, dtype=np.int64) // op.DEN for op in sg.operations().sym_ops]


def _rotation_key(sg) -> frozenset:
    return frozenset(r.tobytes() for r in _rotations(sg))


def _extended_candidates(candidates) -> list:
    """The candidates plus their permuted-axis settings with the same rotations and
    centring (orthorhombic: P 21 2 2, P 2 21 2, P 2 21 21, P 21 2 21), by number."""
    candidates = list(candidates)
    names = {sg.xhm() for sg in candidates}
    keys = {(_rotation_key(sg), sg.centring_type()) for sg in candidates}
    numbers = {sg.number for sg in candidates}
    extra = [s for s in gemmi.spacegroup_table()
             if s.number in numbers and s.qualifier in _PERMUTED_SETTINGS and s.xhm() not in names
             and s.is_sohncke() and (_rotation_key(s), s.centring_type()) in keys]
    order = {id(sg): k for k, sg in enumerate(candidates + extra)}
    return sorted(candidates + extra, key=lambda sg: (sg.number, order[id(sg)]))


def _axial_period(sg, axis: int) -> int:
    """The period r of allowed reflections n·e_axis (n allowed iff n ≡ 0 mod r)."""
    h = np.zeros((_PERIOD_PROBE, 3), dtype=np.int32)
    h[:, axis] = np.arange(1, _PERIOD_PROBE + 1)
    allowed = ~np.asarray(sg.operations().systematic_absences(h), dtype=bool)
    n = np.nonzero(allowed)[0]
    return int(n[0] + 1) if len(n) else _PERIOD_PROBE


def _lattice_period(sg, axis: int) -> int:
    """The period along ``axis`` that the centring translations alone impose."""
    for r in range(1, _PERIOD_PROBE + 1):
        if all((r * t[axis]) % 24 == 0 for t in sg.operations().cen_ops):
            return r
    return _PERIOD_PROBE


def _axis_classes(groups) -> list[dict]:
    """Cell axes grouped by the Laue rotations (an axial index row e_i maps to ±e_j),
    each with the highest order of a rotation about it."""
    rots = {r.tobytes(): r for sg in groups for r in _rotations(sg)}.values()
    classes, seen = [], set()
    for i in range(3):
        if i in seen:
            continue
        e = np.eye(3, dtype=np.int64)[i]
        members = sorted({j for R in rots for j in range(3) if np.abs(e @ R).tolist() == np.eye(3)[j].tolist()})
        seen.update(members)
        order = 1
        for R in rots:
            if (e @ R).tolist() == e.tolist():
                k, M = 1, R.copy()
                while not np.array_equal(M, np.eye(3, dtype=np.int64)) and k < 7:
                    M, k = M @ R, k + 1
                order = max(order, k)
        # dials names pooled cubic axes after a, tetragonal/hexagonal unique axes after c
        classes.append({"axes": members, "first": members[0], "order": order})
    return sorted(classes, key=lambda c: -c["order"])  # the principal axis first, as dials


def _merged_axial(hkl: np.ndarray, ios: np.ndarray, axes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(n, merged I/σ) of the axial reflections along ``axes``, n = |index| > 0,
    merged over Friedel mates, the pooled axes and repeats: Σ(I/σ)/√m."""
    ns, vals = [], []
    for a in axes:
        others = [j for j in range(3) if j != a]
        sel = (hkl[:, others[0]] == 0) & (hkl[:, others[1]] == 0) & (hkl[:, a] != 0)
        ns.append(np.abs(hkl[sel, a]))
        vals.append(ios[sel])
    n = np.concatenate(ns) if ns else np.zeros(0, np.int64)
    v = np.concatenate(vals) if vals else np.zeros(0)
    ok = np.isfinite(v)
    n, v = n[ok], v[ok]
    if not len(n):
        return n, v
    uniq, inv = np.unique(n, return_inverse=True)
    inv = inv.ravel()
    return uniq, np.bincount(inv, v) / np.sqrt(np.bincount(inv))


def score_screw_axis(ios_present: np.ndarray, ios_absent: np.ndarray,
                     significance_level: float = SIGNIFICANCE_LEVEL) -> dict:
    """dials' direct score of one screw axis from the merged I/σ of its expected-present
    and expected-absent axial reflections (module docstring, step 3)."""
    n_pres, n_abs = len(ios_present), len(ios_absent)
    out = {"n_expected_absent": n_abs, "n_expected_present": n_pres,
           "mean_i_over_sigma_absent": float(np.mean(ios_absent)) if n_abs else None,
           "mean_i_over_sigma_present": float(np.mean(ios_present)) if n_pres else None,
           "z_score": None, "score": 0.0, "verdict": "undetermined", "comment": ""}
    if n_abs < MIN_REFLECTIONS or n_pres < MIN_REFLECTIONS:
        out["comment"] = "not enough data"
        return out
    cutoff = NormalDist().inv_cdf(significance_level)
    mean_abs, mean_pres = out["mean_i_over_sigma_absent"], out["mean_i_over_sigma_present"]
    z_abs, z_pres = mean_abs / 1.0, mean_pres / 1.0  # standard error 1, as dials
    out["z_score"] = z_abs
    p_abs, p_pres = _phi(z_abs), _phi(z_pres)
    if z_abs > cutoff and not mean_pres > PRESENT_OVER_ABSENT * mean_abs:
        out.update(score=(1.0 - p_abs) * p_pres, verdict="absent",
                   comment="significant intensity where the screw axis makes reflections absent")
        return out
    if z_abs > cutoff:  # most intensity where expected, yet the absent side is not weak
        trimmed = np.sort(ios_absent)[:-1]
        if float(np.mean(trimmed)) > cutoff:
            out.update(score=(1.0 - p_abs) * p_pres, verdict="absent",
                       comment="weak reflections where absent: pseudosymmetry?")
            return out
        out["mean_i_over_sigma_absent"] = float(np.mean(trimmed))
        out["z_score"] = out["mean_i_over_sigma_absent"]
        if z_pres > cutoff:
            out.update(score=p_pres, verdict="present",
                       comment="after removing a suspected outlier among the expected absent")
            return out
    elif z_pres > cutoff:
        out.update(score=p_pres, verdict="present")
        return out
    out["comment"] = "no evidence for the screw axis, too little to rule it out"
    return out


def _condition(period: int, repeat: int):
    """True: the group has this screw's absences; False: it has reflections the screw
    would remove; None: this test does not decide it (dials' 'pass')."""
    if period == repeat:
        return True
    if repeat % period == 0:
        return False
    return None


def _screw_tests(groups) -> list[dict]:
    tests = []
    for cls in _axis_classes(groups):
        a = cls["first"]
        lattice = _lattice_period(groups[0], a)
        periods = sorted({_axial_period(sg, a) for sg in groups} - {1, lattice}, reverse=True)
        for r in periods:
            if r % lattice:
                continue
            tests.append({"axis": f"{cls['order']}{cls['order'] // r}{_AXIS_NAMES[a]}", "axes": cls["axes"],
                          "repeat": r, "lattice_period": lattice})
    return tests


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def absence_scores(merged: tuple[np.ndarray, np.ndarray], candidates) -> dict:
    """``{"rows": [...], "chosen": hm, "note": str, "screw_axes": [...]}`` for candidate
    space groups (gemmi, reference settings; orthorhombic ones are completed with their
    other axis settings). ``merged`` is (hkl in the reference setting, I/σ)."""
    hkl, ios = merged
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    ios = np.asarray(ios, dtype=float).ravel()
    groups = _extended_candidates(candidates)

    # the screw-axis tests and their scores
    screw_axes = []
    for t in _screw_tests(groups):
        n, v = _merged_axial(hkl, ios, t["axes"])
        keep = n % t["lattice_period"] == 0
        n, v = n[keep], v[keep]
        present = n % t["repeat"] == 0
        row = {"axis": t["axis"], "repeat": t["repeat"]}
        row.update(score_screw_axis(v[present], v[~present]))
        row["_test"] = t
        screw_axes.append(row)

    # the space groups scored from the axes
    rows = []
    unique_hkl, unique_ios = hkl, ios
    if len(hkl):
        keys, inv = np.unique(hkl_keys(hkl), return_inverse=True)  # as np.unique(axis=0), ~10× faster
        unique_hkl, inv = unpack_keys(keys), inv.ravel()
        unique_ios = np.bincount(inv, ios) / np.bincount(inv)
    for sg in groups:
        ops = sg.operations()
        absent = np.asarray(ops.systematic_absences(unique_hkl.astype(np.int32)), dtype=bool) \
            if len(unique_hkl) else np.zeros(0, bool)
        allowed_by_centring = np.ones(len(unique_hkl), dtype=bool)
        for tr in ops.cen_ops:  # translations in 24ths: h·t must be a whole number
            allowed_by_centring &= (unique_hkl @ np.asarray(tr, dtype=np.int64)) % 24 == 0
        extra = absent & allowed_by_centring
        conditions = {}
        score = 1.0
        for a in screw_axes:
            t = a["_test"]
            c = _condition(_axial_period(sg, t["axes"][0]), t["repeat"])
            conditions[a["axis"]] = c
            if c is True:
                score *= a["score"]
            elif c is False:
                score *= 1.0 - a["score"]
        consistent = all(c is None or a["verdict"] == "undetermined"
                         or (c is True) == (a["verdict"] == "present")
                         for a, c in zip(screw_axes, conditions.values()))
        rows.append({"space_group": sg.xhm(), "n_absent": int(extra.sum()),
                     "mean_i_over_sigma_absent": float(np.mean(unique_ios[extra])) if extra.any() else None,
                     "score": float(score), "consistent": bool(consistent),
                     "conditions": dict(conditions),
                     "_periods": tuple(_axial_period(sg, i) for i in range(3))})
    best = max(range(len(rows)), key=lambda k: (rows[k]["score"], -k)) if rows else None
    chosen = rows[best]["space_group"] if rows else None
    note = ""
    if rows and rows[best]["consistent"]:
        same = [r for r in rows if r["consistent"]]
        if len(same) > 1:
            names = [r["space_group"] for r in same]
            if len({r["_periods"] for r in same}) == 1:
                why = "they have the same systematic absences"
                if any(gemmi.find_spacegroup_by_name(x).is_enantiomorphic() for x in names):
                    why = "enantiomorphs: " + why
            else:
                open_axes = [a for a in screw_axes if a["verdict"] == "undetermined"]
                few = all(a["comment"] == "not enough data" for a in open_axes)
                why = (("too few axial reflections" if few else "no clear verdict") + " for "
                       + ", ".join(a["axis"] for a in open_axes)) if open_axes else "no screw-axis test separates them"
            note = (f"{_join(names)} cannot be distinguished by systematic absences in these data "
                    f"({why}); {chosen} is written")
    elif rows and screw_axes:
        note = (f"the screw-axis tests ({', '.join(a['axis'] + ' ' + a['verdict'] for a in screw_axes)}) fit no "
                f"candidate space group exactly; {chosen} (highest score) is written")
    for r in rows:
        r["chosen"] = r["space_group"] == chosen
        del r["_periods"]
    for a in screw_axes:
        del a["_test"]
    return {"rows": rows, "chosen": chosen, "note": note, "screw_axes": screw_axes}
