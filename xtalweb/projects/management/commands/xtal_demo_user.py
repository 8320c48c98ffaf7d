"""``manage.py xtal_demo_user``: the demo login (demo / demo) in group ``demo-lab``.

Idempotent: running it again resets the password and group membership, nothing more.
For development (``make run``) only.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or reset) the demo user 'demo' with password 'demo' in group 'demo-lab'."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--group", default="demo-lab")

    def handle(self, *args, username, password, group, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created or not user.check_password(password) or not user.is_active:
            user.set_password(password)
            user.is_active = True
            user.save()
        lab, _ = Group.objects.get_or_create(name=group)
        user.groups.add(lab)
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} user {username!r} (password {password!r}) in group {group!r}"))
