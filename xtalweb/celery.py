"""The Celery application: ``celery -A xtalweb worker``.

Configuration comes from Django settings (``CELERY_*``): Redis as broker and result
backend, queue ``CELERY_QUEUE``. Tasks live in each app's ``tasks.py``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xtalweb.settings")

app = Celery("xtalweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
