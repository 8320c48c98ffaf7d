"""The Celery application: ``celery -A xtalweb worker``.

Configuration comes from Django settings (``CELERY_*``): Redis as broker and result
backend, queue ``CELERY_QUEUE``. Tasks live in each app's ``tasks.py``.

Tasks are routed (``xtalweb.routing``): per-sweep units to ``<queue>.sweeps``, ensemble
stages and the joins to ``<queue>.ensemble``, the rest to ``<queue>``. A worker started
without ``-Q`` consumes all three; ``-Q xtalweb.sweeps`` makes one that only processes
sweeps (README: "Several workers").
"""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xtalweb.settings")

app = Celery("xtalweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = ("xtalweb.routing.route_task",)


@app.on_after_configure.connect
def _default_worker_queues(sender, **kwargs):
    """A worker without ``-Q`` consumes the configured queue and its ``.sweeps`` and
    ``.ensemble`` queues (unless ``CELERY_TASK_QUEUES`` is set)."""
    from .routing import queue_names

    if not sender.conf.task_queues:
        sender.conf.task_queues = tuple(Queue(n, Exchange(n), routing_key=n)
                                        for n in queue_names(sender.conf.task_default_queue))


app.autodiscover_tasks()
