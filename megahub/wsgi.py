import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "megahub.settings")

application = get_wsgi_application()

# A missing or invalid AI_ENCRYPTION_KEY stops the server here, with a clear message.
from ai_providers.crypto import require_encryption_key  # noqa: E402

require_encryption_key()
