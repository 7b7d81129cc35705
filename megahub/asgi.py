import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "megahub.settings")

application = get_asgi_application()

# A missing or invalid AI_ENCRYPTION_KEY stops the server here, with a clear message.
from ai_providers.crypto import require_encryption_key  # noqa: E402

require_encryption_key()
