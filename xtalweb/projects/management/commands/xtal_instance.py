"""``manage.py xtal_instance``: this instance's queue names, result-key prefix and token.

The names a worker of this instance must consume (README: "Several workers"):

    .venv/bin/celery -A xtalweb worker -Q "$(.venv/bin/python manage.py xtal_instance --queues)"

``--queues`` prints ``<queue>,<queue>.sweeps,<queue>.ensemble``; without it, one line each
for the queues, the result-key prefix and the token (``xtalweb/instance.py``).
"""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print this instance's Celery queue names (--queues: comma-separated for celery -Q), result prefix and token."

    def add_arguments(self, parser):
        parser.add_argument("--queues", action="store_true", help="only the queue names, comma-separated")

    def handle(self, *args, **options):
        from xtalweb.celery import app
        from xtalweb.instance import token
        from xtalweb.routing import queue_names

        names = ",".join(queue_names(app.conf.task_default_queue))
        if options["queues"]:
            self.stdout.write(names)
            return
        prefix = (app.conf.result_backend_transport_options or {}).get("global_keyprefix", "")
        self.stdout.write(f"queues: {names}\nresult keys: {prefix}*\ntoken: {token() or '(none: the database is not reachable or not migrated)'}")
