"""The lineage of a project's runs: the graph parent → child, a run's ancestry, the
project's main line, and the fate of every data set along a line.

Everything here is read from the database as the runs left it (StageRun.parents, the
SweepRun rows of each run and any ``excluded`` list in a run's summary); nothing is
re-derived.

**The main line** of a project (:meth:`Lineage.main_end`) is the ancestry of the latest
succeeded or partial run of the most downstream stage reached, in the order
import → find_spots → index → refine → integrate → cosym (or symmetry) → scale →
compute_delta_cchalf → merge ("latest": the last finished, then the highest id). Each
stage's run on the main line is then that run's ancestor of the stage — the run whose
output the line's end was made from — which is the latest run of the stage unless the
user went back and branched. The fate page names the line's end and links the table of
every other line (the per-run pages, ``runs/<id>/datasets/``).

**A data set** is a sweep, followed by its name (the SweepRun rows carry the sweep's
name in every run). In a run with SweepRun rows, a sweep is kept (✓) when its row
succeeded and left out (✗) when it failed, with the row's message as the reason
(ensemble stages mark a data set they leave out — cosym's too few reflections, scale's
``exclude_datasets`` — failed with the stage's reason). A sweep the run was not given,
although the previous run on the line kept it, left there too: "not chosen for run #N".
A run without SweepRun rows (import) keeps the sweeps its summary lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Prefetch

from .models import Project, StageRun, SweepRun

#: the stages that decide which data sets go on, in pipeline order, with the fate table's column titles
FATE_STAGES = (
    ("import", "imported"), ("find_spots", "spots"), ("index", "indexed"), ("refine", "refined"),
    ("integrate", "integrated"), ("cosym", "kept by cosym"), ("symmetry", "kept by symmetry"),
    ("scale", "kept by scaling"), ("compute_delta_cchalf", "kept by ΔCC½ filtering"), ("merge", "merged"),
)
COLUMN_TITLES = dict(FATE_STAGES)
#: position of each stage along the pipeline (symmetry stands where cosym does)
RANK = {"import": 0, "find_spots": 1, "index": 2, "refine": 3, "integrate": 4, "cosym": 5, "symmetry": 5,
        "scale": 6, "compute_delta_cchalf": 7, "merge": 8}
#: columns shown (empty, "not run yet") after the main line's end; ΔCC½ filtering only when it ran
PLACEHOLDER_STAGES = ("import", "find_spots", "index", "refine", "integrate", "cosym", "scale", "merge")
#: a warning on the project page when a run on the main line left out more than this fraction
LEAVE_OUT_WARNING = 0.10

KEPT, OUT, ACTIVE, NOT_GIVEN, BEFORE, NOT_RUN = "kept", "out", "active", "not-given", "before", "not-run"


def column_title(stage: str) -> str:
    if stage in COLUMN_TITLES:
        return COLUMN_TITLES[stage]
    try:
        from .stages import title

        return title(stage)
    except KeyError:
        return stage


def _latest_key(run: StageRun):
    return (run.finished is not None, run.finished.timestamp() if run.finished else 0.0, run.pk)


class Lineage:
    """All runs of a project (one query each for runs, parents and SweepRun rows)."""

    def __init__(self, project: Project, runs: list[StageRun] | None = None):
        """``runs``: the project's runs already loaded with their parents and SweepRun rows
        (a page that shows them too); else they are read here."""
        self.project = project
        if runs is None:
            # the rows' logs, summaries and file lists can be large and are not needed here
            rows = Prefetch("sweep_runs", queryset=SweepRun.objects.defer("log", "summary", "output_files"))
            runs = list(project.runs.defer("log").prefetch_related("parents", rows).order_by("id"))
        self.runs: dict[int, StageRun] = {r.pk: r for r in runs}
        self.parents: dict[int, list[int]] = {
            r.pk: sorted(p.pk for p in r.parents.all() if p.pk in self.runs) for r in runs}
        self.children: dict[int, list[int]] = {pk: [] for pk in self.runs}
        for child, ps in self.parents.items():
            for p in ps:
                self.children[p].append(child)
        self._depth: dict[int, int] = {}

    # --- graph -------------------------------------------------------------------------------

    def depth(self, pk: int, _visiting: frozenset = frozenset()) -> int:
        """Longest path from a run without parents (0) to ``pk``."""
        if pk not in self._depth:
            visiting = _visiting | {pk}  # a cycle (never made by the app) is cut, not followed
            self._depth[pk] = 1 + max((self.depth(p, visiting) for p in self.parents[pk] if p not in visiting),
                                      default=-1)
        return self._depth[pk]

    def edges(self) -> list[tuple[int, int]]:
        return [(p, c) for c, ps in self.parents.items() for p in ps]

    def ancestry(self, pk: int) -> list[StageRun]:
        """``pk`` and every run above it, upstream first (by depth, then id)."""
        seen, todo = set(), [pk]
        while todo:
            x = todo.pop()
            if x in seen:
                continue
            seen.add(x)
            todo.extend(self.parents[x])
        return sorted((self.runs[x] for x in seen), key=lambda r: (self.depth(r.pk), r.pk))

    # --- the main line ---------------------------------------------------------------------------

    def main_end(self) -> StageRun | None:
        """The latest usable run of the most downstream stage reached (see the module's note)."""
        usable = [r for r in self.runs.values() if r.status in StageRun.USABLE and r.stage in RANK]
        if not usable:
            return None
        return max(usable, key=lambda r: (RANK[r.stage], *_latest_key(r)))

    def line(self, end: StageRun | None) -> list[StageRun]:
        """The runs of the line ending at ``end`` that decide the data sets (no simulate run)."""
        if end is None:
            return []
        return [r for r in self.ancestry(end.pk) if r.stage != "simulate"]

    def leaves(self) -> list[StageRun]:
        """Usable runs that no usable run of the fate stages starts from: the ends of the lines."""
        out = []
        for r in self.runs.values():
            if r.status not in StageRun.USABLE or r.stage not in RANK:
                continue
            if not any(self.runs[c].status in StageRun.USABLE and self.runs[c].stage in RANK
                       for c in self.children[r.pk]):
                out.append(r)
        return sorted(out, key=lambda r: (-RANK[r.stage], -r.pk))


# --- data sets of one run ------------------------------------------------------------------------


def identifier_names(run: StageRun, lin: Lineage | None = None) -> dict[str, str]:
    """Experiment identifier → sweep name, from the nearest run at or above ``run`` whose
    summary lists its experiments (a per-sweep stage's join, e.g. integrate). With
    ``lin``, the walk uses its runs (no queries)."""
    seen, todo = set(), [run]
    while todo:
        r = todo.pop(0)
        if r.pk in seen:
            continue
        seen.add(r.pk)
        exps = (r.summary or {}).get("experiments")
        if isinstance(exps, list):
            found = {e["identifier"]: e.get("name") or "" for e in exps
                     if isinstance(e, dict) and e.get("identifier") and e.get("name")}
            if found:
                return found
        if lin is not None and r.pk in lin.runs:
            todo.extend(lin.runs[p] for p in lin.parents[r.pk])
        else:
            todo.extend(r.parents.all())
    return {}


def _removal_reason(x: dict) -> str:
    """A ΔCC½ filter's ``removed`` entry as one line: its ΔCC½, the cycle, the reason."""
    parts = []
    if isinstance(x.get("delta_cc_half"), (int, float)):
        parts.append(f"ΔCC½ {x['delta_cc_half']:.4g}")
    if x.get("cycle") is not None:
        parts.append(f"removed in cycle {x['cycle']}")
    text = ", ".join(parts)
    if x.get("reason"):
        text = f"{text}: {x['reason']}" if text else str(x["reason"])
    return text or "removed"


def excluded_of(run: StageRun, lin: Lineage | None = None) -> list[dict]:
    """The data sets the run's summary leaves out — its ``excluded`` list (cosym, scale) and
    a filter's ``removed`` list (ΔCC½: with the cycle and ΔCC½) — as ``[{id, identifier,
    name, reason}]`` (name: the sweep's, where an input run maps the identifier)."""
    summary = run.summary or {}
    items = [(x, str(x.get("reason") or "")) for x in summary.get("excluded") or [] if isinstance(x, dict)]
    items += [(x, _removal_reason(x)) for x in summary.get("removed") or [] if isinstance(x, dict)]
    if not items:
        return []
    names = identifier_names(run, lin)
    return [{"id": x.get("id"), "identifier": x.get("identifier"), "name": names.get(x.get("identifier"), ""),
             "reason": reason} for x, reason in items]


@dataclass
class DataSetState:
    """One data set in one run: ``state`` one of kept / out / active (queued or running)."""

    state: str
    reason: str = ""
    #: a part of it (one lattice of several) left out, while the sweep went on
    partly: str = ""


def run_datasets(run: StageRun, lin: Lineage | None = None) -> dict[str, DataSetState] | None:
    """Sweep name → its state in ``run``; None when the run names no sweeps at all.

    A sweep whose row succeeded but whose every experiment the summary leaves out (a
    filter that does not mark rows) is out; one with some experiments left out is kept,
    "partly"."""
    rows = list(run.sweep_runs.all())
    out: dict[str, DataSetState] = {}
    if rows:
        for row in rows:
            if row.status == StageRun.Status.SUCCEEDED:
                out[row.name] = DataSetState(KEPT)
            elif row.status == StageRun.Status.FAILED:
                out[row.name] = DataSetState(OUT, row.error or "failed")
            else:
                out[row.name] = DataSetState(ACTIVE, row.status)
    else:
        sweeps = (run.summary or {}).get("sweeps")
        if not isinstance(sweeps, list) or not sweeps:
            return None
        for k, s in enumerate(sweeps):
            name = str((s or {}).get("name") or f"sweep_{k}")
            failed = (s or {}).get("status") == "failed"
            out[name] = DataSetState(OUT if failed else KEPT, str((s or {}).get("error") or "") if failed else "")
    left = excluded_of(run, lin)
    if left:
        per_sweep: dict[str, int] = {}
        for name in identifier_names(run, lin).values():
            per_sweep[name] = per_sweep.get(name, 0) + 1
        by_name: dict[str, list[dict]] = {}
        for x in left:
            by_name.setdefault(x["name"], []).append(x)
        for name, xs in by_name.items():
            st = out.get(name)
            if st is None or st.state != KEPT:
                continue
            reasons = "; ".join(dict.fromkeys(x["reason"] for x in xs if x["reason"]))
            if len({x["identifier"] for x in xs}) >= per_sweep.get(name, 1):
                out[name] = DataSetState(OUT, reasons or "left out")
            else:
                st.partly = reasons or "some lattices left out"
    return out


def given_and_left(run: StageRun, lin: Lineage | None = None) -> tuple[int, int]:
    """(data sets the run was given, data sets it left out): its SweepRun rows, and the
    data sets its summary leaves out (:func:`run_datasets`)."""
    if not run.sweep_runs.all():
        return 0, 0
    states = run_datasets(run, lin) or {}
    return len(states), sum(1 for s in states.values() if s.state == OUT)


# --- the fate table ------------------------------------------------------------------------------


@dataclass
class FateCell:
    state: str
    reason: str = ""
    partly: str = ""
    #: the column's stage and run id (set by :func:`fate_table`)
    stage: str = ""
    run_id: int | None = None

    @property
    def mark(self) -> str:
        return {KEPT: "✓", OUT: "✗", NOT_GIVEN: "✗", ACTIVE: "…", BEFORE: "", NOT_RUN: "—"}.get(self.state, "—")


@dataclass
class FateColumn:
    stage: str
    title: str
    run: StageRun | None = None


@dataclass
class FateRow:
    name: str
    cells: list[FateCell] = field(default_factory=list)
    #: where it left the line: (column, reason), or None while it goes on
    left: tuple[FateColumn, str] | None = None
    last_kept: FateColumn | None = None


@dataclass
class FateTable:
    end: StageRun | None
    columns: list[FateColumn]
    rows: list[FateRow]


def _sweep_order(project: Project, line: list[StageRun]) -> list[str]:
    names = list(project.sweeps.order_by("id").values_list("name", flat=True))
    seen = set(names)
    for run in line:
        for row in sorted(run.sweep_runs.all(), key=lambda r: r.index):
            if row.name not in seen:
                seen.add(row.name)
                names.append(row.name)
        listed = [] if run.sweep_runs.all() else ((run.summary or {}).get("sweeps") or [])
        for s in listed:
            name = (s or {}).get("name") if isinstance(s, dict) else None
            if name and name not in seen:
                seen.add(name)
                names.append(name)
    return names


def fate_table(project: Project, line: list[StageRun], *, placeholders: bool = False,
               lin: Lineage | None = None) -> FateTable:
    """One row per sweep, one column per run of ``line`` (upstream first); with
    ``placeholders``, empty columns for the standard stages after the line's end."""
    end = line[-1] if line else None
    columns = [FateColumn(r.stage, column_title(r.stage), r) for r in line]
    if placeholders:
        reached = max((RANK.get(r.stage, -1) for r in line), default=-1)
        columns += [FateColumn(s, column_title(s)) for s in PLACEHOLDER_STAGES if RANK[s] > reached]
    states = [run_datasets(c.run, lin) if c.run is not None else None for c in columns]
    rows = []
    for name in _sweep_order(project, line):
        row = FateRow(name)
        alive: bool | None = None  # None: not seen on the line yet
        for col, st in zip(columns, states):
            if col.run is None:
                cell = FateCell(NOT_RUN, "not run yet")
            elif st is None:  # a run that names no sweeps: it passes them on
                cell = FateCell(KEPT if alive else NOT_RUN)
            elif name in st:
                s = st[name]
                if alive is False:  # given again after it left (a user's choice of sweeps): say what happened
                    alive = None
                cell = FateCell(s.state, s.reason, s.partly)
            elif alive:
                cell = FateCell(NOT_GIVEN, f"not chosen for run #{col.run.pk}")
            elif alive is False:
                cell = FateCell(BEFORE)
            else:
                cell = FateCell(NOT_RUN, "not in this run")
            if cell.state == KEPT:
                alive = True
                row.last_kept = col
                row.left = None
            elif cell.state in (OUT, NOT_GIVEN) and alive is not False:
                alive = False
                row.left = (col, cell.reason)
            cell.stage, cell.run_id = col.stage, (col.run.pk if col.run is not None else None)
            row.cells.append(cell)
        rows.append(row)
    return FateTable(end, columns, rows)


@dataclass
class LeaveOutWarning:
    run: StageRun
    n_given: int
    n_left: int

    @property
    def percent(self) -> float:
        return 100.0 * self.n_left / self.n_given

    def __str__(self) -> str:
        return (f"{self.run.get_stage_display()} (run #{self.run.pk}) left out {self.n_left} of {self.n_given} "
                f"data sets ({self.percent:.1f} %)")


def leave_out_warnings(line: list[StageRun], limit: float = LEAVE_OUT_WARNING,
                       lin: Lineage | None = None) -> list[LeaveOutWarning]:
    """The runs of ``line`` that left out more than ``limit`` of the data sets they were given."""
    out = []
    for run in line:
        given, left = given_and_left(run, lin)
        if given and left / given > limit:
            out.append(LeaveOutWarning(run, given, left))
    return out
