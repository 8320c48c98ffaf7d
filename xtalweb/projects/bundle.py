"""The deposition bundle of an approved merge run: one zip.

Inside ``<project>-merge-<id>/``:

* ``merged.mtz`` — the approved run's file (its sha256 checked against the approval's);
* ``scaled_unmerged.mtz`` and ``scaled.cif`` (mmCIF) — from the latest export run made
  from the same scale run; without one the README says so (and the run's page offers to
  run export);
* ``merging_statistics.txt`` — the merging table as dials.merge prints it
  (``processing.cli.merging_table.format_merging_table``);
* ``parameters.json`` — every run of the approved run's ancestry (and the export run):
  stage, status, parameters, parents, sweeps, times;
* ``logs/<nnn>_<stage>_run<id>.log`` — the log of each of those runs (each sweep's part
  of a per-sweep run, then its join);
* ``versions.txt`` — xtalweb/processing, Python, numpy, gemmi, scipy, Django;
* ``README.txt`` — what is where, who approved it when, sha256 of every file.

The zip is written to ``<work_dir>/bundles/`` under a temporary name and renamed
(atomic); its name carries a key of what went in, so a later export run makes a new one
and two requests never see a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
import zipfile
from importlib import metadata

from .lineage import Lineage
from .models import StageRun
from .review import approval_of, export_for, sha256


class BundleError(RuntimeError):
    """The bundle cannot be made; ``str(e)`` says why."""


def versions() -> dict[str, str]:
    out = {}
    for dist in ("xtalweb", "numpy", "gemmi", "scipy", "django"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["python"] = platform.python_version()
    return out


def versions_text() -> str:
    v = versions()
    return "".join([
        f"xtalweb {v['xtalweb']} (web app and the processing library `processing`, `xtal` command line)\n",
        f"numpy {v['numpy']}\n", f"gemmi {v['gemmi']}\n", f"scipy {v['scipy']}\n", f"Django {v['django']}\n",
        f"Python {v['python']} ({platform.platform()})\n"])


def run_log(run: StageRun) -> str:
    """The run's log as the log page shows it: each sweep's part, then the join."""
    rows = list(run.sweep_runs.all())
    if not rows or not any(r.log for r in rows):
        return run.log
    text = "".join(f"=== sweep {s.name} (experiment {s.index}): {s.status} ===\n{s.log}"
                   + ("" if s.log.endswith("\n") else "\n") for s in rows)
    return text + (f"=== join ===\n{run.log}" if run.log else "")


def run_record(run: StageRun, parents: list[int]) -> dict:
    return {"id": run.pk, "stage": run.stage, "status": run.status, "parameters": run.parameters,
            "parents": parents, "sweeps": [r.name for r in run.sweep_runs.all()],
            "output_dir": run.output_dir, "error": run.error,
            "created": run.created.isoformat() if run.created else None,
            "started": run.started.isoformat() if run.started else None,
            "finished": run.finished.isoformat() if run.finished else None}


def merging_table(run: StageRun) -> str:
    from processing.cli.merging_table import format_merging_table

    stats = (run.summary or {}).get("merging_statistics")
    if not stats or not stats.get("shells"):
        return "No merging statistics in this run's summary.\n"
    return "\n".join(format_merging_table(stats)) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60] or "project"


class Contents:
    """What goes into the bundle of ``merge``: the runs, the files, the texts."""

    def __init__(self, merge: StageRun):
        self.merge = merge
        self.approval = approval_of(merge)
        if self.approval is None:
            raise BundleError(f"Run #{merge.pk} is not approved.")
        self.scale, self.export = export_for(merge)
        lin = Lineage(merge.project)
        self.runs = lin.ancestry(merge.pk)
        if self.export is not None:
            self.runs += [self.export]
        self.parents = {r.pk: lin.parents.get(r.pk, []) for r in self.runs}
        self.top = f"{_slug(merge.project.name)}-merge-{merge.pk}"
        self.files: list[tuple[str, str]] = [("merged.mtz", os.path.join(merge.output_dir, "merged.mtz"))]
        if self.export is not None:
            for name in ("scaled_unmerged.mtz", "scaled.cif"):
                path = os.path.join(self.export.output_dir, name)
                if not os.path.isfile(path):
                    raise BundleError(f"{name} of export run #{self.export.pk} is gone from {self.export.output_dir}.")
                self.files.append((name, path))

    def key(self) -> str:
        text = json.dumps([self.approval.pk, self.export.pk if self.export else None,
                           [(r.pk, r.status, str(r.finished)) for r in self.runs]])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def logs(self) -> list[tuple[str, str]]:
        return [(f"logs/{k:03d}_{r.stage}_run{r.pk}.log", run_log(r)) for k, r in enumerate(self.runs, start=1)]

    def parameters(self) -> str:
        return json.dumps({"approved_run": self.merge.pk, "export_run": self.export.pk if self.export else None,
                           "runs": [run_record(r, self.parents[r.pk]) for r in self.runs]}, indent=2) + "\n"

    def readme(self, hashes: dict[str, str]) -> str:
        a, m = self.approval, self.merge
        who = a.approved_by.get_username() if a.approved_by else "a user since removed"
        lines = [f"Deposition bundle of project {m.project.name!r}: approved merge run #{m.pk}",
                 f"Approved by {who} on {a.approved.isoformat()}" + (f": {a.comment}" if a.comment else ""), "",
                 "Files:",
                 f"  merged.mtz                 merged intensities and amplitudes (merge run #{m.pk})"]
        if self.export is not None:
            lines += [f"  scaled_unmerged.mtz        unmerged scaled intensities (export run #{self.export.pk}, "
                      f"from scale run #{self.scale.pk})",
                      f"  scaled.cif                 mmCIF of the same (export run #{self.export.pk})"]
        else:
            scale = f"scale run #{self.scale.pk}" if self.scale else "the scale run"
            lines += ["  (no scaled_unmerged.mtz, no scaled.cif: there is no export run from "
                      f"{scale}, the merge's input. Run export from {scale} — the button on the merge run's page, "
                      "or `xtal export scaled.expt scaled.refl` in its folder — and download the bundle again.)"]
        lines += ["  merging_statistics.txt     the merging table as dials.merge prints it",
                  "  parameters.json            the parameters of every run this result was made from",
                  "  logs/                      the log of each of those runs",
                  "  versions.txt               the software that made it", "",
                  "Runs (upstream first): " + ", ".join(f"#{r.pk} {r.stage}" for r in self.runs), "",
                  "sha256:"] + [f"  {h}  {n}" for n, h in hashes.items()]
        return "\n".join(lines) + "\n"


def _check_approved_file(contents: Contents, name: str, digest: str) -> None:
    expected = (contents.approval.files or {}).get(name)
    if expected and expected != digest:
        raise BundleError(f"{name} of approved run #{contents.merge.pk} changed on disk since its approval "
                          "(sha256 differs): the bundle is not made.")


def write_bundle(contents: Contents, path: str) -> None:
    """Write the zip to ``path`` (a temporary name; the caller renames it)."""
    hashes: dict[str, str] = {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name, src in contents.files:
            digest = sha256(src)
            if os.path.dirname(src) == contents.merge.output_dir:
                _check_approved_file(contents, name, digest)
            z.write(src, f"{contents.top}/{name}")
            hashes[name] = digest
        texts = [("merging_statistics.txt", merging_table(contents.merge)),
                 ("parameters.json", contents.parameters()), ("versions.txt", versions_text())]
        texts += contents.logs()
        for name, text in texts:
            data = text.encode("utf-8")
            z.writestr(f"{contents.top}/{name}", data)
            hashes[name] = hashlib.sha256(data).hexdigest()
        z.writestr(f"{contents.top}/README.txt", contents.readme(hashes))


def bundle_path(merge: StageRun) -> tuple[str, str]:
    """(path of the bundle zip, the file name to download as); built if not there yet."""
    contents = Contents(merge)
    folder = os.path.join(merge.project.work_dir, "bundles")
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, f"merge-{merge.pk}-{contents.key()}.zip")
    if not os.path.isfile(final):
        fd, tmp = tempfile.mkstemp(prefix=f".merge-{merge.pk}-", suffix=".zip.partial", dir=folder)
        os.close(fd)
        try:
            write_bundle(contents, tmp)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return final, f"{contents.top}.zip"
