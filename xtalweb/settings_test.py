"""Settings of the test suite (``DJANGO_SETTINGS_MODULE`` in pyproject.toml): the production
settings in demo mode (``XTALWEB_DEMO=1``: no SECRET_KEY needed, plain http), set in the
environment too, so that the workers and commands the tests start run the same way.
Static files by their plain names, served from ``static/`` (the tests do not run
``collectstatic``)."""

import os

os.environ["XTALWEB_DEMO"] = "1"

from .settings import *  # noqa: E402,F401,F403
from .settings import STORAGES  # noqa: E402

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
# whitenoise serves static/ through the finders (no collected copy that could be stale)
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
