"""Fixtures of the web tests: users and groups, data/work folders, a real Celery worker.

Run with a real PostgreSQL and Redis, as the Makefile does:

    DATABASE_URL=postgresql://root@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/pytest tests/web

Every task this session sends goes to a queue of its own (``xtalweb-test-<random>``),
so a worker of ``make run`` (or another test session) never sees it, and the session's
worker never sees theirs. The worker runs in a thread of the test process
(``celery.contrib.testing.worker.start_worker``), consuming that queue from Redis: it
shares the test database and the ``settings`` overrides of the running test.
"""

from __future__ import annotations

import uuid

import pytest

from .helpers import SMARGON_CBF

TEST_QUEUE = f"xtalweb-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _celery_test_queue():
    """Route every task of this session to the session's own queue; drop it afterwards."""
    from xtalweb.celery import app

    app.conf.task_default_queue = TEST_QUEUE
    app.amqp.__dict__.pop("queues", None)  # rebuilt from the new default on next use
    yield TEST_QUEUE
    try:
        with app.connection_for_write() as conn:
            client = conn.default_channel.client
            client.delete(TEST_QUEUE, f"_kombu.binding.{TEST_QUEUE}", f"_kombu.binding_permanent.{TEST_QUEUE}")
    except Exception:  # Redis gone: nothing to clean
        pass


@pytest.fixture(scope="session")
def celery_worker(_celery_test_queue, django_db_setup, django_db_blocker):
    """A real Celery worker (solo pool, in a thread) consuming the session's queue."""
    from celery.contrib.testing import tasks as _ping_task  # noqa: F401  registers celery.ping
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connection, connections

    from xtalweb.celery import app

    if connection.vendor != "postgresql":
        pytest.fail(
            "the worker tests need PostgreSQL: run with "
            "DATABASE_URL=postgresql://root@127.0.0.1:5432/test (see the Makefile)"
        )

    def close_worker_connections(**kwargs):
        # runs in the worker thread: close its own (thread-local) connections, so that
        # flushing or dropping the test database is never blocked by them
        connections.close_all()

    task_postrun.connect(close_worker_connections, weak=False)
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=True,
            ping_task_timeout=20.0,
            shutdown_timeout=60.0,
            loglevel="WARNING",
        ) as worker:
            yield worker
    finally:
        task_postrun.disconnect(close_worker_connections)


@pytest.fixture
def folders(tmp_path, settings):
    """DATA_ROOTS = [tmp/data], WORK_ROOT = tmp/work, and a folder tmp/outside."""
    data = tmp_path / "data"
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    for d in (data, work, outside):
        d.mkdir()
    settings.DATA_ROOTS = [str(data)]
    settings.WORK_ROOT = str(work)
    return {"data": data, "work": work, "outside": outside}


@pytest.fixture
def users(django_user_model):
    """alice and bob in lab-a, carol in lab-b."""
    from django.contrib.auth.models import Group

    lab_a = Group.objects.create(name="lab-a")
    lab_b = Group.objects.create(name="lab-b")
    alice = django_user_model.objects.create_user("alice", password="pw-alice")
    bob = django_user_model.objects.create_user("bob", password="pw-bob")
    carol = django_user_model.objects.create_user("carol", password="pw-carol")
    alice.groups.add(lab_a)
    bob.groups.add(lab_a)
    carol.groups.add(lab_b)
    return {"alice": alice, "bob": bob, "carol": carol, "lab_a": lab_a, "lab_b": lab_b}


@pytest.fixture
def smargon_cbf():
    if not SMARGON_CBF.exists():
        pytest.skip(f"real data not available: {SMARGON_CBF}")
    return SMARGON_CBF


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The simulator's ``tiny`` preset (3 crystals × 10 images, NXmx), made once per session
    through ``tasks.simulate_into`` (the same function the demo command and the
    simulate task use)."""
    from xtalweb.projects.tasks import simulate_into

    target = tmp_path_factory.mktemp("simulated") / "tiny"
    try:
        simulate_into("tiny", str(target))
    except ImportError as exc:  # the simulator is not there yet
        pytest.skip(f"processing.simulate is not available: {exc}")
    return target


@pytest.fixture
def tiny_data(tiny_dataset, folders):
    """A copy of the tiny data set inside this test's data root: ``data/tiny``."""
    import shutil

    dst = folders["data"] / "tiny"
    shutil.copytree(tiny_dataset, dst)
    return dst


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The users fixture makes three users per test: hash their passwords cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
