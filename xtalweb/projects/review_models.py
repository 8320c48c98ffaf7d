"""Lab-group review (issue 15): shares, notes, data-set flags, approved runs and the
activity list. Imported by ``models.py`` (the app's models module), so Django registers
them in the ``projects`` app; the behaviour around them lives in ``review.py``.

* :class:`ProjectShare` — the owner gives another lab group or one user read-only or
  read-write access (``permissions.access_level``).
* :class:`Note` — text on the project, on one run, or on one data set (a sweep, by name:
  the name is what every run's SweepRun rows carry).
* :class:`DatasetFlag` — ``suspect`` (a warning badge) or ``exclude`` (left out of the
  next run's default selection, with the reason), one per data set.
* :class:`Approval` — one merge run approved: its files are locked (``review.approve``);
  the run cannot be deleted (``on_delete=PROTECT``), nor its project.
* :class:`Activity` — who ran, dropped, approved, commented, flagged or shared what,
  when, with which parameters.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q


class ProjectShare(models.Model):
    class Access(models.TextChoices):
        READ = "read", "read-only"
        WRITE = "write", "read-write"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="shares")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="project_shares")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                             related_name="project_shares")
    access = models.CharField(max_length=5, choices=Access.choices, default=Access.READ)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "id"]
        constraints = [
            models.CheckConstraint(condition=(Q(group__isnull=True) & Q(user__isnull=False))
                                   | (Q(group__isnull=False) & Q(user__isnull=True)),
                                   name="share_with_group_xor_user"),
            models.UniqueConstraint(fields=["project", "group"], condition=Q(group__isnull=False),
                                    name="one_share_per_group"),
            models.UniqueConstraint(fields=["project", "user"], condition=Q(user__isnull=False),
                                    name="one_share_per_user"),
        ]

    @property
    def who(self) -> str:
        return f"group {self.group.name}" if self.group_id else f"user {self.user.get_username()}"

    def __str__(self) -> str:
        return f"{self.project_id} → {self.who} ({self.access})"


class Note(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="notes")
    run = models.ForeignKey("projects.StageRun", on_delete=models.CASCADE, null=True, blank=True,
                            related_name="notes", help_text="The run the note is about (or none).")
    dataset = models.CharField(max_length=255, blank=True, help_text="The data set (sweep name) it is about.")
    text = models.TextField(max_length=4000)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    @property
    def about(self) -> str:
        if self.run_id:
            return f"run #{self.run_id}"
        if self.dataset:
            return f"data set {self.dataset}"
        return "the project"

    def __str__(self) -> str:
        return f"{self.project_id}: note on {self.about}"


class DatasetFlag(models.Model):
    class Kind(models.TextChoices):
        SUSPECT = "suspect", "suspect"
        EXCLUDE = "exclude", "exclude"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="flags")
    dataset = models.CharField(max_length=255, help_text="The data set (sweep name).")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    reason = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "dataset"]
        constraints = [models.UniqueConstraint(fields=["project", "dataset"], name="one_flag_per_dataset")]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.dataset} {self.kind}"


class Approval(models.Model):
    run = models.OneToOneField("projects.StageRun", on_delete=models.PROTECT, related_name="approval")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                    related_name="+")
    approved = models.DateTimeField(auto_now_add=True)
    comment = models.CharField(max_length=500, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text="{file name: sha256} at approval.")

    def __str__(self) -> str:
        return f"run {self.run_id} approved"


class Activity(models.Model):
    class Verb(models.TextChoices):
        RAN = "ran", "ran"
        QUEUED = "queued", "queued automatically"
        DROPPED = "dropped", "dropped"
        RETRIED = "retried", "retried"
        APPROVED = "approved", "approved"
        COMMENTED = "commented", "commented"
        FLAGGED = "flagged", "flagged"
        SHARED = "shared", "shared"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="activity")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    verb = models.CharField(max_length=10, choices=Verb.choices)
    run = models.ForeignKey("projects.StageRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    stage = models.CharField(max_length=20, blank=True)
    detail = models.CharField(max_length=1000, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.project_id}: {self.user_id} {self.verb} {self.detail}"
