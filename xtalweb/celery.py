"""The Celery application: ``celery -A xtalweb worker``.

Configuration comes from Django settings (``CELERY_*``): Redis as broker and result
backend, queue ``CELERY_QUEUE`` (default: named after this instance's database,
``xtalweb/instance.py``). Tasks live in each app's ``tasks.py``.

Tasks are routed (``xtalweb.routing``): per-sweep units to ``<queue>.sweeps``, ensemble
stages and the joins to ``<queue>.ensemble``, the rest to ``<queue>``. A worker started
without ``-Q`` consumes all three; ``-Q <queue>.sweeps`` makes one that only processes
sweeps (README: "Several workers").

One instance on a shared Redis (``xtalweb/instance.py``): result keys start with
``<queue>:``; every task message carries the instance's token and a worker of another
instance hands it over unrun to the instance's private queue ``<queue>.i-<token>``, which
every worker of that instance also consumes. A worker also runs the watchdog every
``XTALWEB_WATCHDOG_PERIOD`` seconds (``xtalweb/projects/watchdog.py``): a run whose tasks
vanished is re-queued once or failed with a message, never "running" forever. Its pool
processes run niced (``XTALWEB_WORKER_NICE``, default 10) so that the pages stay quick
on a machine that also serves them.
"""

import os

from celery import Celery
from celery.signals import (before_task_publish, celeryd_after_setup, worker_process_init, worker_ready,
                            worker_shutdown)
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xtalweb.settings")

app = Celery("xtalweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = ("xtalweb.routing.route_task",)


@app.on_after_configure.connect
def _default_worker_queues(sender, **kwargs):
    """A worker without ``-Q`` consumes the configured queue and its ``.sweeps`` and
    ``.ensemble`` queues (unless ``CELERY_TASK_QUEUES`` is set); result keys are kept
    under ``<queue>:`` (unless a ``global_keyprefix`` is configured)."""
    from .routing import queue_names

    if not sender.conf.task_queues:
        sender.conf.task_queues = tuple(Queue(n, Exchange(n), routing_key=n)
                                        for n in queue_names(sender.conf.task_default_queue))
    options = dict(sender.conf.result_backend_transport_options or {})
    if not options.get("global_keyprefix"):
        options["global_keyprefix"] = f"{sender.conf.task_default_queue}:"
        sender.conf.result_backend_transport_options = options


@before_task_publish.connect(weak=False)
def _stamp_instance(headers=None, **kwargs):
    """Every task message carries this instance's token (``xtalweb/instance.py``)."""
    from .instance import stamp_headers

    stamp_headers(headers=headers)


@celeryd_after_setup.connect(weak=False)
def _private_queues(sender=None, instance=None, **kwargs):
    """A worker also consumes its instance's private queues (``<queue>.i-<token>``), where
    workers of other instances sharing the queue names hand over its tasks."""
    from .instance import add_private_queues

    added = add_private_queues(instance)
    if added:
        import logging

        logging.getLogger("xtalweb.instance").info("also consuming %s", ", ".join(added))


@worker_process_init.connect(weak=False)
def _lower_priority(**kwargs):
    """The pool processes (the science) run at a lower CPU priority (``XTALWEB_WORKER_NICE``,
    default 10; 0 leaves it): on a machine that also serves the web pages, the pages stay
    quick while stages run; on a node of its own it changes nothing."""
    try:
        nice = int(os.environ.get("XTALWEB_WORKER_NICE", "10"))
    except ValueError:
        nice = 10
    if nice > 0:
        try:
            os.nice(nice)
        except OSError:
            pass


@worker_ready.connect(weak=False)
def _start_watchdog(sender=None, **kwargs):
    """The worker's periodic check for runs whose tasks vanished (``XTALWEB_WATCHDOG_PERIOD``
    seconds, default 60; 0 turns it off)."""
    from .projects import watchdog

    watchdog.start_periodic()


@worker_shutdown.connect(weak=False)
def _stop_watchdog(sender=None, **kwargs):
    from .projects import watchdog

    watchdog.stop_periodic()


app.autodiscover_tasks()
