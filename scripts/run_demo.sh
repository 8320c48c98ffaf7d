#!/usr/bin/env bash
# `make run`: migrate, make the demo user and project, start a Celery worker and the
# web server on 127.0.0.1:8000. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export DATA_ROOTS="${DATA_ROOTS:-$PWD/var/data}"
export WORK_ROOT="${WORK_ROOT:-$PWD/var/work}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p var "${DATA_ROOTS%%:*}" "$WORK_ROOT"

$PY manage.py migrate --noinput
$PY manage.py xtal_demo_user

# One worker for everything: the configured queue and its .sweeps (per-sweep units) and
# .ensemble (ensemble stages, joins) queues (xtalweb/routing.py; README "Several workers").
QUEUE="${CELERY_QUEUE:-xtalweb}"
.venv/bin/celery -A xtalweb worker --loglevel=info --concurrency=2 -Q "$QUEUE,$QUEUE.sweeps,$QUEUE.ensemble" \
  >var/celery.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null || true' EXIT INT TERM

# The demo project (simulated `tiny` data) is made once and processed by the worker.
$PY manage.py xtal_demo_project || echo "demo project: see the message above"

echo
echo "xtalweb is running: http://$HOST:$PORT/   login: demo / demo"
echo "(Celery worker log: var/celery.log; Ctrl-C stops the server and the worker)"
echo
$PY manage.py runserver "$HOST:$PORT" --noreload
