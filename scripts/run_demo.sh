#!/usr/bin/env bash
# `make run`: migrate, make the demo user and project, start a Celery worker and the web
# server (gunicorn; CSS/JS through whitenoise) on 127.0.0.1:8000. Ctrl-C stops both.
# Demo mode (XTALWEB_DEMO=1): no SECRET_KEY needed, plain http; a facility deploys with the
# production settings instead (README: "Deploying at a facility").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export XTALWEB_DEMO=1
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export DATA_ROOTS="${DATA_ROOTS:-$PWD/var/data}"
export WORK_ROOT="${WORK_ROOT:-$PWD/var/work}"
export HOST="${HOST:-127.0.0.1}"
export PORT="${PORT:-8000}"
mkdir -p var "${DATA_ROOTS%%:*}" "$WORK_ROOT"

$PY manage.py migrate --noinput
$PY manage.py collectstatic --noinput -v 0
$PY manage.py xtal_demo_user

# One worker for everything: without -Q it consumes this instance's queue and its .sweeps
# (per-sweep units) and .ensemble (ensemble stages, joins) queues — CELERY_QUEUE, else named
# after the database (xtalweb/celery.py, xtalweb/instance.py; README "Several workers").
.venv/bin/celery -A xtalweb worker --loglevel=info --concurrency=2 >var/celery.log 2>&1 &
WORKER=$!
WEB=
trap 'kill $WORKER ${WEB:+$WEB} 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

# The demo project (simulated `tiny` data) is made once and processed by the worker.
$PY manage.py xtal_demo_project || echo "demo project: see the message above"

# gunicorn's settings: xtalweb/gunicorn_conf.py (binds $HOST:$PORT; WEB_CONCURRENCY workers)
.venv/bin/gunicorn -c python:xtalweb.gunicorn_conf &
WEB=$!
for _ in $(seq 1 50); do
  $PY -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('$HOST', $PORT)))" 2>/dev/null && break
  kill -0 $WEB 2>/dev/null || { echo "the web server did not start (see above)"; exit 1; }
  sleep 0.2
done
echo
echo "xtalweb is running: http://$HOST:$PORT/   login: demo / demo"
echo "(gunicorn serves the web app; Celery worker log: var/celery.log; Ctrl-C stops the server and the worker)"
echo
wait $WEB
