"""Which Celery queue each task goes to, so that work can be spread over machines.

Three queues, named from the configured one (``<base>`` = ``app.conf.task_default_queue``,
i.e. settings ``CELERY_QUEUE``, default ``xtalweb``; the tests' per-session queue there):

``<base>.sweeps``    the per-sweep unit tasks (find spots, index, refine, integrate on one
                     sweep each): the image processing, what a big box should take.
``<base>.ensemble``  the whole-ensemble stage tasks (cosym, scale, merge …) and the joins
                     of the per-sweep runs, which also queue the follow-up stages.
``<base>``           everything else: the whole-project tasks (simulate, import) and any
                     task not named here (e.g. ``celery.ping``).

The names are derived when a task is sent, so changing ``task_default_queue`` (as the
tests do) moves all three. :func:`route_task` is installed as ``task_routes`` in
``xtalweb/celery.py``; no call site names a queue.
"""

from __future__ import annotations

SWEEPS = "sweeps"
ENSEMBLE = "ensemble"

#: task name → the queue's suffix
TASK_QUEUES: dict[str, str] = {
    "xtalweb.projects.tasks.run_sweep_unit": SWEEPS,
    "xtalweb.projects.tasks.run_ensemble_stage": ENSEMBLE,
    "xtalweb.projects.tasks.join_stage_run": ENSEMBLE,
}


def queue_names(base: str) -> tuple[str, str, str]:
    """``(base, base.sweeps, base.ensemble)``: the queues a worker that does everything consumes."""
    return base, f"{base}.{SWEEPS}", f"{base}.{ENSEMBLE}"


def queue_for(task_name: str, base: str) -> str:
    """The queue ``task_name`` is sent to when the configured queue is ``base``."""
    suffix = TASK_QUEUES.get(task_name)
    return f"{base}.{suffix}" if suffix else base


def _base(task=None) -> str:
    if task is not None and getattr(task, "app", None) is not None:
        return task.app.conf.task_default_queue
    from .celery import app

    return app.conf.task_default_queue


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router (``task_routes``): ``{"queue": …}`` for the tasks of :data:`TASK_QUEUES`,
    None (the default queue) for the rest. A queue given explicitly at send time wins."""
    suffix = TASK_QUEUES.get(name)
    if suffix is None:
        return None
    return {"queue": f"{_base(task)}.{suffix}"}
