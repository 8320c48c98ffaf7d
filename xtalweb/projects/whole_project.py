"""The whole-project stages: simulate a preset into the data folder, import its images.

Each runs as one task (``tasks.py``) and writes into its own new run folder; the
import replaces the project's Sweep rows (keeping each sweep's "included" flag).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import traceback

from django.db import transaction

from .context import RunContext, claim, failure_message
from .datafiles import find_image_files
from .folders import new_output_dir, remove
from .models import Project, StageRun, Sweep
from .permissions import DataPathError, resolve_data_path
from .runs import queue_follow_up
from .sweep_inputs import StageInputError


def sweep_from_summary(project: Project, s: dict, included: bool) -> Sweep:
    image_range = s.get("image_range") or [None, None]
    oscillation = s.get("oscillation") or [None, None]
    beam = s.get("beam_centre_px") or [None, None]
    start, end = image_range[0], image_range[1]
    n_images = (end - start + 1) if start is not None and end is not None else len(s.get("files") or [])
    return Sweep(
        project=project,
        name=str(s.get("name", ""))[:255],
        files=list(s.get("files") or []),
        image_range_start=start,
        image_range_end=end,
        n_images=max(int(n_images), 0),
        oscillation_start=oscillation[0],
        oscillation_width=oscillation[1],
        detector=str(s.get("detector", ""))[:255],
        wavelength=s.get("wavelength"),
        beam_centre_x=beam[0],
        beam_centre_y=beam[1],
        distance=s.get("distance_mm"),
        included=included,
        summary=s,
    )


def import_images(stagerun_id: int) -> str | None:
    """Import the images of the project's data folder: ``imported.expt`` + Sweep rows."""
    run = claim(stagerun_id, "import")
    if run is None:
        return None
    project = run.project
    out_dir: str | None = None
    with RunContext(run) as ctx:
        try:
            from processing.errors import XtalError
        except Exception:
            ctx.fail("Internal error: the processing library cannot be loaded; see the log",
                     traceback.format_exc())
            return StageRun.Status.FAILED
        try:
            root = resolve_data_path(project.data_root)
            if not os.path.isdir(root):
                raise StageInputError(f"The data folder {project.data_root} does not exist")
            ctx.info("Looking for images in %s", root)
            files = find_image_files(root)
            if not files:
                raise StageInputError(
                    f"No image files (*.cbf, *_master.h5, NXmx *.h5, *.nxs) found in {project.data_root}"
                )
            ctx.info("Found %d image file(s)", len(files))
            ctx.progress(0.1)

            from processing.io.expt import write_experiments
            from processing.params import to_json
            from processing.stages import STAGES

            stage = STAGES["import"]
            image_range = run.parameters.get("image_range") if isinstance(run.parameters, dict) else None
            params = stage.params(paths=tuple(files), image_range=tuple(image_range) if image_range else None)
            parameters = to_json(params)
            StageRun.objects.filter(pk=run.pk).update(parameters=parameters)
            ctx.info("ImportParams: %s", json.dumps(parameters))

            experiments, _, summary = stage.execute(None, None, params)
            ctx.progress(0.8)

            out_dir = new_output_dir(project.work_dir, "import")
            path = os.path.join(out_dir, stage.experiments_output)
            write_experiments(path, experiments)
            ctx.info("Wrote %s", path)
            ctx.info(
                "%s: %s image(s), %s sweep(s), %s still(s)",
                summary.get("format"), summary.get("n_images"), summary.get("n_sweeps"), summary.get("n_stills"),
            )

            with transaction.atomic():
                previous = dict(project.sweeps.values_list("name", "included"))
                project.sweeps.all().delete()
                Sweep.objects.bulk_create(
                    [sweep_from_summary(project, s, previous.get(s.get("name"), True))
                     for s in summary.get("sweeps", [])]
                )
                ctx.succeed(summary=summary, output_dir=out_dir)
            queue_follow_up(run.pk)
            return StageRun.Status.SUCCEEDED
        except (XtalError, StageInputError, DataPathError) as exc:
            remove(out_dir)
            ctx.fail(str(exc))
        except Exception as exc:
            remove(out_dir)
            ctx.fail(failure_message(exc, "import"), traceback.format_exc())
    return StageRun.Status.FAILED


def simulate_into(preset: str, target: str, seed: int = 0, log=None, overrides: dict | None = None) -> dict:
    """Simulate ``preset`` into the folder ``target`` (made here), atomically: the files
    are written into a temporary sibling folder that is renamed at the end, so
    ``target`` is either complete or absent. An existing complete ``target``
    (``truth.json`` present) is left alone. ``overrides`` are SimulateParams fields
    (e.g. ``{"n_crystals": 3, "n_images": 4}``). Returns the simulation summary."""
    from processing.simulate import SimulateParams, run_simulate

    marker = os.path.join(target, "truth.json")
    if os.path.isfile(marker):
        with open(marker) as f:
            doc = json.load(f)
        return dict(doc.get("truth") or {}, files=doc.get("files"), reused=True)
    if os.path.exists(target):
        raise StageInputError(f"{target} exists but holds no complete simulation (no truth.json)")
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        if log:
            log("Simulating preset %s into %s", preset, target)
        _, summary = run_simulate(SimulateParams(preset=preset, seed=seed, output_dir=tmp, **(overrides or {})))
        try:
            os.rename(tmp, target)
        except OSError:
            if os.path.isfile(marker):  # another worker finished first: keep its copy
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = json.loads(json.dumps(summary).replace(tmp, target))  # file paths as they are now
    return summary


def simulate_preset(stagerun_id: int) -> str | None:
    """Simulate a preset into the project's data folder (then the follow-up: import)."""
    run = claim(stagerun_id, "simulate")
    if run is None:
        return None
    project = run.project
    with RunContext(run) as ctx:
        try:
            from processing.errors import XtalError
        except Exception:
            ctx.fail("Internal error: the processing library cannot be loaded; see the log", traceback.format_exc())
            return StageRun.Status.FAILED
        try:
            preset = str((run.parameters or {}).get("preset") or "tiny")
            seed = int((run.parameters or {}).get("seed") or 0)
            # the folder itself does not exist yet: check where it will be
            target = os.path.join(resolve_data_path(os.path.dirname(project.data_root)),
                                  os.path.basename(project.data_root))
            ctx.progress(0.05)
            from processing.summary import json_ready

            summary = json_ready(simulate_into(preset, target, seed=seed, log=ctx.info))
            summary.pop("parameters", None)
            ctx.info("Simulated %s crystal(s) into %s", len(summary.get("crystals") or []), target)
            ctx.succeed(summary=summary, output_dir=target)
        except (XtalError, StageInputError, DataPathError) as exc:
            ctx.fail(str(exc))
            return StageRun.Status.FAILED
        except Exception as exc:
            ctx.fail(failure_message(exc, "the simulation"), traceback.format_exc())
            return StageRun.Status.FAILED
    queue_follow_up(run.pk)
    return StageRun.Status.SUCCEEDED
