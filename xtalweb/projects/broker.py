"""What the broker holds: the messages waiting in Redis for this instance's queues, so the
watchdog (``watchdog.py``) can tell a queued task that is still there from one that vanished."""
from __future__ import annotations

import base64
import json
import logging
import time


logger = logging.getLogger(__name__)
TASKS = "xtalweb.projects.tasks."
UNIT = TASKS + "run_sweep_unit"


# --- messages in Redis ---------------------------------------------------------------

_redis_clients: dict[str, object] = {}


def _redis(url: str):
    import redis

    client = _redis_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        _redis_clients[url] = client
    return client


def _message_key(raw) -> tuple | None:
    """``(task name, run id, unit or None, token)`` of a task message in Redis, or None."""
    try:
        msg = json.loads(raw)
        headers = msg.get("headers") or {}
        name = headers.get("task") or ""
        if not name.startswith(TASKS):
            return None
        args = None
        try:
            body = msg.get("body")
            if (msg.get("properties") or {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
        except Exception:
            import ast

            args = ast.literal_eval(headers.get("argsrepr") or "()")
        run_id = int(args[0])
        unit = int(args[1]) if name == UNIT and len(args) > 1 else None
        from ..instance import HEADER

        return name, run_id, unit, headers.get(HEADER)
    except Exception:
        return None


def pending_messages(app=None) -> dict | None:
    """This instance's task messages in Redis: ``{(task name, run id, unit): age}`` where
    ``age`` is None for a message waiting in a queue and the seconds since a worker took
    it (``unacked``) otherwise. None if Redis cannot be read now."""
    from ..instance import token
    from ..routing import queue_names

    if app is None:
        from ..celery import app
    from ..instance import private_queue

    prefix = str((app.conf.broker_transport_options or {}).get("global_keyprefix") or "")
    mine = token()
    names = list(queue_names(app.conf.task_default_queue))
    if mine:  # where workers of other instances hand over this instance's tasks
        names += [private_queue(q, mine) for q in names]
    queues = [prefix + q for q in names]
    found: dict = {}

    def add(key, age):
        if key is None or (key[3] and mine and key[3] != mine):  # another instance's message
            return
        k = key[:3]
        if k in found and (found[k] is None or (age is not None and found[k] <= age)):
            return  # keep the freshest sign: waiting in a queue, else the latest taken
        found[k] = age

    try:
        client = _redis(app.conf.broker_url)
        pipe = client.pipeline(transaction=False)
        for q in queues:
            pipe.lrange(q, 0, -1)
        pipe.hgetall(prefix + "unacked")
        pipe.zrange(prefix + "unacked_index", 0, -1, withscores=True)
        *lists, unacked, index = pipe.execute()
    except Exception as exc:
        logger.warning("watchdog: cannot read the task queues (%s); queued runs not checked", exc)
        return None
    for items in lists:
        for raw in items:
            add(_message_key(raw), None)
    since = {(t.decode() if isinstance(t, bytes) else t): score for t, score in index}
    now = time.time()
    wanted = set(queues) | set(names)
    for tag, raw in unacked.items():
        try:
            payload, _exchange, routing_key = json.loads(raw)
        except Exception:
            continue
        if routing_key not in wanted:
            continue
        tag = tag.decode() if isinstance(tag, bytes) else tag
        add(_message_key(json.dumps(payload)), max(0.0, now - since.get(tag, now)))
    return found


def _present(pending: dict, key: tuple, grace: float) -> bool:
    """Whether the message ``key`` waits in a queue or was taken by a worker less than
    ``grace`` seconds ago (a worker that took it long ago and never started it is gone)."""
    if key not in pending:
        return False
    age = pending[key]
    return age is None or age < grace


