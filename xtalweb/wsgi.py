"""WSGI entry point (gunicorn: ``gunicorn -c python:xtalweb.gunicorn_conf``)."""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xtalweb.settings")

try:
    application = get_wsgi_application()
except SystemExit as exc:
    # The settings refused to start (no SECRET_KEY): their one message, then exit status 3,
    # which gunicorn takes as "worker failed to boot" and stops (rather than restarting
    # workers that fail the same way forever).
    if exc.code not in (None, 0) and not isinstance(exc.code, int):
        print(exc.code, file=sys.stderr)
        raise SystemExit(3) from None
    raise
