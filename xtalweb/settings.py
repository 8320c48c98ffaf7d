"""Django settings for xtalweb.

Everything that differs between a laptop, the tests and a facility deployment comes
from the environment (README: "Deploying at a facility"):

``XTALWEB_DEMO``   ``1``: the local demo of ``make run`` and the tests — no SECRET_KEY
                   needed (a random one is kept in ``var/secret_key``), plain http on
                   127.0.0.1. Without it the settings are the production ones: SECRET_KEY
                   is required (they refuse to start without it, with one clear message),
                   and cookies, redirects and HSTS assume https behind a TLS proxy.
``SECRET_KEY``     required unless XTALWEB_DEMO=1 (50+ random characters).
``DEBUG``          ``1``/``true``/``yes`` to enable (default off, also in the demo).
``ALLOWED_HOSTS``  comma-separated host names the site is served as, besides 127.0.0.1
                   and localhost (e.g. ``xtalweb.facility.org``).
``CSRF_TRUSTED_ORIGINS``  comma-separated origins (``https://xtalweb.facility.org``) when
                   the proxy changes the host or scheme the browser sees.
``DATABASE_URL``   ``postgresql://user:password@host:port/name``; without it SQLite at
                   ``var/db.sqlite3`` (the zero-setup default for ``make run``).
``REDIS_URL``      Celery broker and result backend (default redis://127.0.0.1:6379/0).
``CELERY_QUEUE``   the Celery queue the web app sends to and workers consume, with its
                   ``.sweeps`` and ``.ensemble`` queues (default ``xtalweb-<8 hex>``, named
                   after the database, so two instances on one Redis never share one;
                   ``manage.py xtal_instance`` prints it).
``CELERY_VISIBILITY_TIMEOUT``  seconds before Redis hands an unacknowledged task to
                   another worker (default 12 h; longer than any one task).
``DATA_ROOTS``     ``os.pathsep``-separated folders users may import from
                   (default ``var/data`` in the repository).
``WORK_ROOT``      where each project's work directory lives (default ``var/work``).
``STATIC_ROOT``    where ``collectstatic`` puts CSS/JS for whitenoise (default ``var/static``).

https behind a TLS-terminating proxy (production defaults in brackets; all off in the demo):

``SECURE_SSL_REDIRECT`` [on]  redirect http to https.
``SECURE_PROXY_SSL_HEADER`` [``X-Forwarded-Proto``]  the header by which the proxy says the
                   browser used https (value ``https``); empty: trust no header (only if
                   nothing but the proxy can reach the app server).
``USE_X_FORWARDED_HOST`` [off]  take the host name from ``X-Forwarded-Host``.
``SESSION_COOKIE_SECURE``, ``CSRF_COOKIE_SECURE`` [on]  cookies only over https.
``SECURE_HSTS_SECONDS`` [31536000]  HSTS max-age; ``0`` sends no HSTS header.
``SECURE_HSTS_INCLUDE_SUBDOMAINS``, ``SECURE_HSTS_PRELOAD`` [on]  HSTS flags.
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


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _refuse(message: str) -> None:
    """Stop with one clear line on stderr (manage.py, celery, gunicorn --preload), no traceback."""
    raise SystemExit(f"xtalweb: {message}")


def _demo_secret_key() -> str:
    """The demo's key: random, made once per checkout in ``var/secret_key`` (never a key
    published in the source, so a demo's sessions cannot be forged elsewhere)."""
    import secrets

    path = VAR_DIR / "secret_key"
    try:
        key = path.read_text().strip()
        if key:
            return key
        path.unlink()  # an empty file (a full disk?): make it again
    except FileNotFoundError:
        pass
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process of the demo
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


#: ``XTALWEB_DEMO=1``: the local demo (``make run``) and the tests. Anything else is production.
DEMO = _env_bool("XTALWEB_DEMO", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    if not DEMO:
        _refuse("SECRET_KEY is not set. Set SECRET_KEY to a long random string (e.g. "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`), or XTALWEB_DEMO=1 "
                "for a local demo on 127.0.0.1 (make run).")
    SECRET_KEY = _demo_secret_key()
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"] + (["testserver"] if DEMO else []) + _env_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")

# --- https behind a TLS-terminating proxy (production); plain http for the demo -------

_proxy_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "" if DEMO else "X-Forwarded-Proto").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https") if _proxy_header else None
)
USE_X_FORWARDED_HOST = _env_bool("USE_X_FORWARDED_HOST", False)
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", not DEMO)
SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", not DEMO)
CSRF_COOKIE_SECURE = _env_bool("CSRF_COOKIE_SECURE", not DEMO)
SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 0 if DEMO else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEMO)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", not DEMO)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

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
    # CSS/JS from STATIC_ROOT (collectstatic), compressed and cached, by the app server itself
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", str(VAR_DIR / "static")))
# `manage.py collectstatic` (run_demo.sh, the Dockerfile) writes hashed, compressed copies
# that whitenoise serves with far-future caching (xtalweb/staticfiles.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "xtalweb.staticfiles.StaticStorage"},
}

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

# --- this instance's namespace on a shared Redis (xtalweb/instance.py) ----------------
# Without CELERY_QUEUE the queues and result keys are named after the database, so that
# two instances sharing one Redis (two `make run`) never take each other's tasks.
if not os.environ.get("CELERY_QUEUE", "").strip():
    from xtalweb.instance import default_queue

    CELERY_TASK_DEFAULT_QUEUE = default_queue(DATABASES["default"])
