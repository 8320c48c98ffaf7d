"""This instance's namespace on a shared Redis: its queue names, its result keys and the
token its tasks carry.

Several xtalweb instances may share one Redis (two ``make run`` on one machine, a test
instance beside production). Each instance is one database. So that none takes the
other's work:

- **Queue names and result keys** are named after the instance: ``CELERY_QUEUE`` if set,
  else :func:`default_queue` of the database (``xtalweb-<8 hex digits>`` from the database's
  name, or its file's path for SQLite); the three queues are ``<name>``,
  ``<name>.sweeps`` and ``<name>.ensemble`` (``xtalweb.routing``), and result keys start
  with ``<name>:`` (``xtalweb/celery.py``). Web server and workers of one instance share
  the database and so derive the same name; machines that reach one PostgreSQL under
  different host names still agree (the name is the database's, not the host's). Set
  ``CELERY_QUEUE`` to the same value everywhere to name it yourself.
- **A token** in every task message (header ``xtalweb_instance``, set when the task is
  sent): a hash of the database's identity and of when it was first migrated (one row of
  ``django_migrations``), so two databases never share it, even with the same name. A
  worker whose own token differs — another instance sharing the queue name — refuses
  the message (:func:`strategy`): it does not run it, and hands it over, unchanged, to
  the queue ``<queue>.i-<their token>`` that only workers of the sending instance consume
  (every worker also consumes ``<queue>.i-<own token>`` for each of its queues,
  :func:`add_private_queues`); the original is acknowledged only once the copy is in
  Redis. (Simply handing it back to the shared queue is not enough: two workers of two
  instances, each holding the other's last message, would take their own refusals back
  for ever.) If the hand-over fails, the message goes back to its queue unacknowledged
  after :data:`REFUSE_DELAY` s. A message without a token (sent by an older version) is
  accepted.

Nothing here imports Django models; ``settings.py`` imports :func:`default_queue`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time

logger = logging.getLogger(__name__)

#: the message header that carries the sending instance's token
HEADER = "xtalweb_instance"
#: seconds a refused message is held (unacknowledged) before it goes back to the queue,
#: so that a worker of the wrong instance does not spin on it
REFUSE_DELAY = 1.0

_tokens: dict[str, str] = {}
_lock = threading.Lock()


def database_identity(db: dict) -> str:
    """What names a database, the same on every machine that uses it: the engine and the
    database's name (for SQLite the file's resolved path)."""
    engine = str(db.get("ENGINE") or "")
    name = str(db.get("NAME") or "")
    if engine.endswith("sqlite3"):
        if name and name != ":memory:" and not name.startswith("file:"):
            name = os.path.realpath(name)
        return f"sqlite:{name}"
    return f"{engine.rsplit('.', 1)[-1]}:{name}"


def default_queue(db: dict) -> str:
    """The instance's queue name when ``CELERY_QUEUE`` is not set: ``xtalweb-<hash>`` of the
    database (:func:`database_identity`)."""
    return "xtalweb-" + hashlib.sha1(database_identity(db).encode()).hexdigest()[:8]


def token(using: str = "default") -> str | None:
    """This instance's token (16 hex digits): the database's identity and when it was first
    migrated. Read once per process and database; None if the database cannot be read
    now (then messages go without a token and any worker takes them, as before)."""
    from django.db import connections

    conn = connections[using]
    ident = database_identity(conn.settings_dict)
    found = _tokens.get(ident)
    if found is not None:
        return found
    with _lock:
        if ident in _tokens:
            return _tokens[ident]
        was_open = conn.connection is not None
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT MIN(applied) FROM django_migrations")
                first = cursor.fetchone()[0]
        except Exception as exc:  # no database (yet), or not migrated: no token
            logger.debug("no instance token: %s", exc)
            return None
        finally:
            if not was_open and not conn.in_atomic_block:
                # a worker's main process forks its pool: never leave a connection to inherit
                conn.close()
        if first is None:  # not migrated yet: no token (and none remembered)
            return None
        value = hashlib.sha1(f"{ident}|{first}".encode()).hexdigest()[:16]
        _tokens[ident] = value
        return value


def stamp_headers(headers: dict | None = None, **kwargs) -> None:
    """``before_task_publish`` receiver: put this instance's token into the message."""
    if headers is None:
        return
    try:
        value = token()
    except Exception:  # settings not ready, no database: send without
        value = None
    if value:
        headers[HEADER] = value


# --- the worker side: refuse another instance's messages ---------------------------------

#: ``<queue>.i-<token>``: where a worker hands over the messages of the instance ``token``
PRIVATE = ".i-"

_refused: dict[str, float] = {}


def private_queue(queue: str, value: str) -> str:
    """The queue of instance ``value``'s refused messages of ``queue``."""
    return f"{queue.split(PRIVATE, 1)[0]}{PRIVATE}{value}"


def add_private_queues(worker) -> list[str]:
    """``celeryd_after_setup`` receiver: the worker also consumes, for each of its queues,
    this instance's private queue (where workers of other instances hand over its
    messages). Nothing if the database cannot be read now."""
    from kombu import Exchange, Queue

    mine = token()
    if not mine:
        logger.warning("this worker's database cannot be read: it takes every task, of any instance")
        return []
    queues = worker.app.amqp.queues
    added = []
    for name in list(queues.consume_from):
        if PRIVATE in name:
            continue
        target = private_queue(name, mine)
        queues.select_add(Queue(target, Exchange(target), routing_key=target))
        added.append(target)
    return added


def _hand_over(app, message, theirs: str) -> str:
    """Publish ``message`` unchanged to its instance's private queue, then acknowledge it."""
    from kombu import Exchange, Queue

    queue = (message.delivery_info or {}).get("routing_key") or app.conf.task_default_queue
    target = private_queue(queue, theirs)
    q = Queue(target, Exchange(target), routing_key=target)
    props = message.properties or {}
    with app.producer_or_acquire() as producer:
        producer.publish(message.body, exchange=q.exchange, routing_key=target, declare=[q],
                         headers=dict(message.headers or {}), content_type=message.content_type,
                         content_encoding=message.content_encoding, correlation_id=props.get("correlation_id"),
                         reply_to=props.get("reply_to"), retry=True,
                         retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5})
    message.ack()
    return target


def _requeue(message) -> None:
    try:
        message.reject(requeue=True)
    except Exception:  # the connection went away: the broker restores it itself
        logger.warning("could not hand back a refused message", exc_info=True)


def strategy(task, app, consumer, **kwargs):
    """Celery task strategy (``Task.Strategy``): Celery's default, after a check that the
    message was sent by this instance. A message of another instance (another token) is
    not run: it is handed over to that instance's private queue (:func:`_hand_over`), or
    if that fails handed back, unacknowledged, to its queue after :data:`REFUSE_DELAY` s."""
    from celery.worker.strategy import default

    handle = default(task, app, consumer, **kwargs)
    call_after = consumer.timer.call_after

    def task_message_handler(message, body, ack, reject, callbacks, **kw):
        theirs = (message.headers or {}).get(HEADER)
        if theirs:
            mine = token()
            if mine and theirs != mine:
                task_id = (message.headers or {}).get("id", "?")
                try:
                    where = "handed over to " + _hand_over(app, message, theirs)
                except Exception as exc:
                    where = f"handed back to its queue ({type(exc).__name__}: {exc})"
                    call_after(REFUSE_DELAY, _requeue, (message,))
                now = time.monotonic()
                if now - _refused.get(task_id, -1e9) > 60.0:
                    logger.warning("refused task %s[%s]: it belongs to another xtalweb instance "
                                   "(token %s; this worker's database has %s); %s",
                                   task.name, task_id, theirs, mine, where)
                    _refused[task_id] = now
                    if len(_refused) > 10000:
                        _refused.clear()
                return None
        return handle(message, body, ack, reject, callbacks, **kw)

    return task_message_handler


def use_queue(app, base: str) -> None:
    """Send this process's tasks to the queues named ``base`` (and its ``.sweeps`` and
    ``.ensemble``) with result keys under ``base:`` — what ``CELERY_QUEUE=base`` does at
    start-up, for a process already running (the tests). The result backend of the
    calling thread is rebuilt."""
    app.conf.task_default_queue = base
    app.amqp.__dict__.pop("queues", None)  # rebuilt from the new default on next use
    options = dict(app.conf.result_backend_transport_options or {})
    options["global_keyprefix"] = f"{base}:"
    app.conf.result_backend_transport_options = options
    app._local.__dict__.pop("backend", None)
    if getattr(app, "_backend_cache", None) is not None:
        app._backend_cache = None
