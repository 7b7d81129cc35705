"""The Celery application. Configuration lives in settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "megahub.settings")

app = Celery("megahub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _require_encryption_key(**kwargs: object) -> None:
    # Workers decrypt credentials: refuse to start without a usable AI_ENCRYPTION_KEY.
    from ai_providers.crypto import require_encryption_key

    require_encryption_key()
