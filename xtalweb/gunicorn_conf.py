"""gunicorn's settings for xtalweb: ``gunicorn -c python:xtalweb.gunicorn_conf`` (``make run``,
the docker image). The web app itself is ``xtalweb.wsgi:application``; CSS/JS are served by
whitenoise inside it (after ``manage.py collectstatic``), so no other server is needed in
front but the facility's TLS proxy.

Environment: ``GUNICORN_BIND`` (default ``$HOST:$PORT``, i.e. ``127.0.0.1:8000``),
``WEB_CONCURRENCY`` (worker processes, default 2), ``GUNICORN_THREADS`` (threads per
worker, default 4: the live pages poll small JSON endpoints), ``GUNICORN_TIMEOUT`` (s,
default 120), ``GUNICORN_ACCESS_LOG`` (a file, or ``-`` for stdout; default none).
"""

import os

bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
wsgi_app = "xtalweb.wsgi:application"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 20
# the settings are loaded once, in the master: a missing SECRET_KEY stops the server with
# its one message instead of failing every worker that starts
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# gunicorn ≥ 24's control socket is one path per user: two servers (a second checkout, the
# tests) would fight over it, and nothing here uses it
control_socket_disable = True
