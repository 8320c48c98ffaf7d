"""Projects, their sweeps and the stage runs that process them.

A lab group is Django's auth ``Group``. The science results themselves live in files
under each StageRun's own output folder; the database keeps the small JSON summary
each stage returns, which is what the pages draw.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse


class StrictJSONEncoder(DjangoJSONEncoder):
    """JSON as PostgreSQL's jsonb and SQLite's ``JSON_VALID`` accept it: NaN and ±inf are
    refused with a ValueError when the row is saved (the science writes ``None``)."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_nan"] = False
        super().__init__(*args, **kwargs)


class Project(models.Model):
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    group = models.ForeignKey(
        Group,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="projects",
        help_text="Lab group that shares this project (optional).",
    )
    data_root = models.CharField(
        max_length=4096, help_text="Absolute (resolved) folder inside one of the DATA_ROOTS."
    )
    work_dir = models.CharField(max_length=4096, blank=True, help_text="WORK_ROOT/<project id>")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("project_detail", args=[self.pk])


class Sweep(models.Model):
    """One imported sweep (a rotation scan, or a still) and its geometry as imported."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sweeps")
    name = models.CharField(max_length=255)
    files = models.JSONField(default=list, blank=True)
    image_range_start = models.IntegerField(null=True, blank=True)
    image_range_end = models.IntegerField(null=True, blank=True)
    n_images = models.PositiveIntegerField(default=0)
    oscillation_start = models.FloatField(null=True, blank=True, help_text="degrees")
    oscillation_width = models.FloatField(null=True, blank=True, help_text="degrees per image")
    detector = models.CharField(max_length=255, blank=True)
    wavelength = models.FloatField(null=True, blank=True, help_text="Å")
    beam_centre_x = models.FloatField(null=True, blank=True, help_text="px (fast)")
    beam_centre_y = models.FloatField(null=True, blank=True, help_text="px (slow)")
    distance = models.FloatField(null=True, blank=True, help_text="mm")
    included = models.BooleanField(default=True)
    summary = models.JSONField(encoder=StrictJSONEncoder, default=dict, blank=True)

    class Meta:
        ordering = ["project", "id"]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.name}"

    def as_dict(self) -> dict:
        return {
            "id": self.pk,
            "name": self.name,
            "files": self.files,
            "image_range": [self.image_range_start, self.image_range_end],
            "n_images": self.n_images,
            "oscillation": [self.oscillation_start, self.oscillation_width],
            "detector": self.detector,
            "wavelength": self.wavelength,
            "beam_centre_px": [self.beam_centre_x, self.beam_centre_y],
            "distance_mm": self.distance,
            "included": self.included,
        }


def stage_choices() -> list[tuple[str, str]]:
    """The stages a run may be of: ``simulate`` (the web's demo data) and every stage of
    the science's registry (``processing.stages``), in pipeline order."""
    from processing.stages import STAGES

    return [("simulate", "simulate")] + [(s.name, s.title) for s in STAGES.values()]


class StageRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        #: a fanned-out run where some sweeps succeeded and some failed
        PARTIAL = "partial", "partial"
        FAILED = "failed", "failed"

    #: statuses whose (succeeded) sweeps a next run may start from
    USABLE = (Status.SUCCEEDED, Status.PARTIAL)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    stage = models.CharField(max_length=20, choices=stage_choices)
    parameters = models.JSONField(encoder=StrictJSONEncoder, default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    log = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="The one clear message shown to the user.")
    summary = models.JSONField(encoder=StrictJSONEncoder, default=dict, blank=True)
    output_dir = models.CharField(max_length=4096, blank=True)
    parents = models.ManyToManyField("self", symmetrical=False, related_name="children", blank=True)
    follow_up = models.JSONField(
        default=list, blank=True,
        help_text="Stages to queue (default parameters) after this run succeeds, e.g. [\"find_spots\", \"index\"].",
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    #: last sign of life of the run's task(s) (sent, or beating while they run); the
    #: watchdog (``watchdog.py``) fails or re-queues a run whose tasks went silent
    heartbeat = models.DateTimeField(null=True, blank=True)
    #: how often the watchdog re-queued the run's lost tasks (at most once)
    requeues = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["project", "created", "id"]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.stage}#{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    def get_log_url(self) -> str:
        return reverse("stagerun_log", args=[self.project_id, self.pk])

    def get_report_url(self) -> str:
        return reverse("stagerun_report", args=[self.project_id, self.pk])

    @property
    def is_per_sweep(self) -> bool:
        from .stages import is_per_sweep

        return is_per_sweep(self.stage)

    def get_stage_display(self) -> str:
        return dict(stage_choices()).get(self.stage, self.stage)

    def as_dict(self, compact: bool = False) -> dict:
        """The run as JSON. ``compact`` leaves the bulky per-image/per-lattice parts of
        the per-sweep summaries out (the polled status endpoint); the report endpoint has
        them all."""
        from .stages import compact_summary

        sweep_runs = list(self.sweep_runs.all()) if self.pk else []
        return {
            "id": self.pk,
            "stage": self.stage,
            "status": self.status,
            "progress": self.progress,
            "error": self.error,
            "summary": compact_summary(self.summary) if compact else self.summary,
            "parameters": self.parameters,
            "output_dir": self.output_dir,
            "parents": [p.pk for p in self.parents.all()] if self.pk else [],
            "created": self.created.isoformat() if self.created else None,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "log_url": self.get_log_url(),
            "retry_url": (reverse("stagerun_retry", args=[self.project_id, self.pk])
                          if self.is_per_sweep and self.status in (self.Status.PARTIAL, self.Status.FAILED)
                          else None),
            "n_failed_sweeps": sum(1 for s in sweep_runs if s.status == self.Status.FAILED),
            "report_url": self.get_report_url(),
            "sweeps": [s.as_dict(compact=compact) for s in sweep_runs],
        }


class SweepRun(models.Model):
    """One sweep's part of a per-sweep StageRun (find_spots, index): its own status,
    live progress, one-line error, log and summary.

    Each Celery task of the run's fan-out updates only its own rows, so several
    workers never write the same row; the StageRun's overall progress is recomputed
    from these rows in one UPDATE statement.
    """

    Status = StageRun.Status

    run = models.ForeignKey(StageRun, on_delete=models.CASCADE, related_name="sweep_runs")
    sweep = models.ForeignKey(Sweep, on_delete=models.SET_NULL, null=True, blank=True, related_name="stage_runs",
                              help_text="The Sweep row (gone after a re-import; the name stays).")
    index = models.PositiveIntegerField(help_text="Position of the sweep in the input experiment list.")
    name = models.CharField(max_length=255)
    unit = models.PositiveIntegerField(default=0, help_text="Task of the fan-out that processes this sweep.")
    status = models.CharField(max_length=10, choices=StageRun.Status.choices, default=StageRun.Status.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    log = models.TextField(blank=True)
    summary = models.JSONField(encoder=StrictJSONEncoder, default=dict, blank=True)
    output_files = models.JSONField(default=list, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    #: last sign of life of the unit task processing this sweep (``watchdog.py``)
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="unique_sweep_per_run")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name} ({self.status})"

    def as_dict(self, compact: bool = False) -> dict:
        from .stages import compact_sweep_summary

        return {
            "index": self.index,
            "name": self.name,
            "status": self.status,
            "progress": self.progress,
            "error": self.error,
            "summary": compact_sweep_summary(self.summary) if compact else self.summary,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
        }


# lab-group review (issue 15): defined in their own module, registered here with the app
from .review_models import Activity, Approval, DatasetFlag, Note, ProjectShare  # noqa: E402,F401
