"""Django settings for xtalweb.

Everything that differs between a laptop, the tests and a facility deployment comes
from the environment:

``DATABASE_URL``   ``postgresql://user:password@host:port/name``; without it SQLite at
                   ``var/db.sqlite3`` (the zero-setup default for ``make run``).
``REDIS_URL``      Celery broker and result backend (default redis://127.0.0.1:6379/0).
``CELERY_QUEUE``   the Celery queue the web app sends to and workers consume
                   (default ``xtalweb``).
``CELERY_VISIBILITY_TIMEOUT``  seconds before Redis hands an unacknowledged task to
                   another worker (default 12 h; longer than any one task).
``DATA_ROOTS``     ``os.pathsep``-separated folders users may import from
                   (default ``var/data`` in the repository).
``WORK_ROOT``      where each project's work directory lives (default ``var/work``).
``SECRET_KEY``     required in production; a development default otherwise.
``DEBUG``          ``1``/``true``/``yes`` to enable (default on, for development).
``ALLOWED_HOSTS``  extra comma-separated host names besides 127.0.0.1, localhost,
                   testserver.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def database_from_url(url: str) -> dict:
    """Django DATABASES entry from ``postgres[ql]://user:password@host:port/name`` or
    ``sqlite:////absolute/path.sqlite3``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if not parts.path:
            raise ValueError("DATABASE_URL: sqlite:////absolute/path/to/db.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path,
                "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"}}
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use postgresql:// or sqlite://)")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("DATABASE_URL: no database name (postgresql://user@host:port/NAME)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,
    }


SECRET_KEY = os.environ.get("SECRET_KEY", "django-insecure-xtalweb-development-key-do-not-use-in-production")
DEBUG = _env_bool("DEBUG", True)
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"] + [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "xtalweb.projects",
    "xtalweb.reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "xtalweb.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "xtalweb.wsgi.application"
ASGI_APPLICATION = "xtalweb.asgi.application"

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # several worker processes write progress: wait for the lock rather than fail,
            # and take it at BEGIN so that no transaction has to upgrade a read lock
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            # tests: a file, not Django's in-memory default, so that the Celery worker the
            # tests start (another thread, another connection) sees the same database
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }
    VAR_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# --- data locations ----------------------------------------------------------------

DATA_ROOTS = [
    p for p in os.environ.get("DATA_ROOTS", str(VAR_DIR / "data")).split(os.pathsep) if p.strip()
]
WORK_ROOT = os.environ.get("WORK_ROOT", str(VAR_DIR / "work"))

# --- Celery ------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "xtalweb")
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
# Stages are long; a worker takes one task at a time so others can pick up the rest.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task is acknowledged when it has finished, so a worker that dies (or a machine that
# goes away) hands its task back to the queue; tasks are idempotent (tasks.py).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# With acks_late Redis redelivers a task not acknowledged within the visibility timeout:
# it must be longer than the longest task (one sweep's stage), or it would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 12 * 3600))}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 12 * 3600))}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "xtalweb": {"level": os.environ.get("LOG_LEVEL", "INFO")},
        "processing": {"level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}
