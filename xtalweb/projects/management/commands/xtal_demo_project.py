"""``manage.py xtal_demo_project``: the demo project of ``make run``.

Simulates the ``tiny`` preset (3 crystals × 10 images) into ``<first DATA_ROOT>/demo-tiny/``
once, creates the project "Demo: tiny (3 crystals)" owned by ``demo`` (group
``demo-lab``) and queues import → find_spots → index → refine → integrate (each
queued when the one before it has succeeded). Idempotent: a second call changes nothing.
"""

from __future__ import annotations

import io
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from xtalweb.projects import runs, whole_project
from xtalweb.projects.models import Project
from xtalweb.projects.permissions import data_roots

DEMO_NAME = "Demo: tiny (3 crystals)"
DEMO_FOLDER = "demo-tiny"


class Command(BaseCommand):
    help = "Simulate the tiny data set once and create (once) the processed demo project of user 'demo'."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--group", default="demo-lab")

    def handle(self, *args, username, group, **options):
        call_command("xtal_demo_user", username=username, group=group, stdout=io.StringIO())
        user = get_user_model().objects.get(username=username)
        lab = Group.objects.get(name=group)
        roots = data_roots()
        if not roots:
            raise CommandError("No data roots are configured (DATA_ROOTS)")
        target = os.path.join(roots[0], DEMO_FOLDER)
        try:
            summary = whole_project.simulate_into("tiny", target)
        except Exception as exc:
            raise CommandError(f"could not simulate the demo data into {target}: {exc}") from None
        if summary.get("reused"):
            self.stdout.write(f"Demo data: {target} (already there)")
        else:
            self.stdout.write(self.style.SUCCESS(f"Simulated the tiny data set into {target}"))

        existing = Project.objects.filter(name=DEMO_NAME, owner=user).first()
        if existing is not None:
            self.stdout.write(f"Demo project #{existing.pk} exists; nothing queued")
            return
        work_root = os.path.realpath(os.path.expanduser(str(settings.WORK_ROOT)))
        with transaction.atomic():
            project = Project.objects.create(name=DEMO_NAME, owner=user, group=lab, data_root=target)
            project.work_dir = os.path.join(work_root, str(project.pk))
            os.makedirs(project.work_dir, exist_ok=True)
            project.save(update_fields=["work_dir"])
            run = runs.create_run(project, "import", parameters={"data_root": target},
                                   follow_up=["find_spots", "index", "refine", "integrate", "cosym", "scale",
                                              "merge"])
            run_id = run.pk
            transaction.on_commit(lambda: runs.dispatch_run(run_id))
        self.stdout.write(self.style.SUCCESS(
            f"Created the demo project #{project.pk} ({DEMO_NAME}); queued import → find_spots → index → refine → integrate → "
            "cosym → scale → merge"))
