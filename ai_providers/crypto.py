"""Encryption of provider API keys at rest (SPEC §5, STYLE habit 9).

``MultiFernet`` over ``settings.AI_ENCRYPTION_KEY``: a comma-separated list of Fernet keys,
newest first. The newest encrypts; every listed key decrypts, so keys rotate without
downtime (add the new key in front, run ``audit_ai_credentials --rotate-expired`` or
``credential_rotate_encryption``, then drop the old key).

Contracts:

* The key is read from settings at call time (cached per setting value), never derived from
  ``SECRET_KEY``, and there is no plaintext fallback: a missing or invalid key raises
  ``ImproperlyConfigured`` here and fails the ``ai_providers.E001`` system check.
* A ciphertext is bound to its row: the payload is ``{"b": brand_id, "c": credential_id,
  "k": api_key}`` and decryption checks both ids, so a token copied into another row fails
  with ``CredentialDecryptionError`` instead of yielding the other row's key.
* No function here logs, or puts into an exception, a key, a plaintext or a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from megahub.refcache import refcache_changed

from .errors import CredentialDecryptionError
from .models import ProviderCredential

SETTING = "AI_ENCRYPTION_KEY"
GENERATE_HINT = (
    'Generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)

_lock = threading.Lock()
_cache: tuple[object, MultiFernet] | None = None


def _raw_setting() -> object:
    return getattr(settings, SETTING, "")


def parse_keys(raw: object, *, with_hint: bool = True) -> list[Fernet]:
    """The Fernet keys of a setting value (str "k1,k2" or a list), newest first.

    Raises ``ImproperlyConfigured`` naming the position of a bad key, never its value.
    """
    if isinstance(raw, str):
        parts = raw.split(",")
    elif isinstance(raw, list | tuple):
        parts = [str(p) for p in raw]
    else:
        parts = []
    keys = [p.strip() for p in parts if p and p.strip()]
    if not keys:
        raise ImproperlyConfigured(
            f"{SETTING} is not set: provider credentials cannot be encrypted or decrypted. "
            "Set it to one or more comma-separated Fernet keys, newest first."
            + (f" {GENERATE_HINT}" if with_hint else "")
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # `from None`: the underlying error may quote the bad key.
            raise ImproperlyConfigured(
                f"{SETTING} key #{position} of {len(keys)} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)." + (f" {GENERATE_HINT}" if with_hint else "")
            ) from None
    return fernets


def multi_fernet() -> MultiFernet:
    """The ``MultiFernet`` for the current setting value (rebuilt when the value changes)."""
    global _cache
    raw = _raw_setting()
    cached = _cache
    if cached is not None and cached[0] == raw:
        return cached[1]
    with _lock:
        built = MultiFernet(parse_keys(raw))
        _cache = (raw, built)
        return built


@receiver(setting_changed)
def _clear_cache_on_setting_change(*, setting: str, **kwargs: object) -> None:
    global _cache
    if setting == SETTING:
        with _lock:
            _cache = None


def check_configuration() -> str | None:
    """None when ``AI_ENCRYPTION_KEY`` is usable, else why not (for the system check)."""
    try:
        parse_keys(_raw_setting(), with_hint=False)
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


def check_encryption_key(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """System check ``ai_providers.E001``: ``AI_ENCRYPTION_KEY`` is set and valid.

    An Error stops ``runserver``, ``migrate`` and ``check`` (so the container's start-up
    ``migrate`` fails before the server starts). The message never contains a key.
    """
    problem = check_configuration()
    if problem is None:
        return []
    return [
        checks.Error(
            problem,
            hint=f"Set {SETTING} in the environment (see .env.example). {GENERATE_HINT}",
            id="ai_providers.E001",
        )
    ]


def mask_api_key(last4: str) -> str:
    """The form shown instead of a key: ``"sk-...abcd"`` (``"sk-...****"`` when unknown)."""
    return f"sk-...{last4 or '****'}"


def key_last4(api_key: str) -> str:
    return api_key[-4:]


def encrypt_api_key(*, brand_id: int, credential_id: int, api_key: str) -> str:
    """A Fernet token (str) of ``api_key`` bound to ``brand_id`` and ``credential_id``.

    Encrypts under the newest key. Raises ``ImproperlyConfigured`` if no usable key.
    """
    if brand_id is None or credential_id is None:
        raise ValueError("encrypt_api_key needs a saved credential (brand_id and credential_id).")
    payload = json.dumps(
        {"b": brand_id, "c": credential_id, "k": api_key}, separators=(",", ":")
    ).encode()
    return multi_fernet().encrypt(payload).decode("ascii")


def _open(token: str) -> dict:
    try:
        plaintext = multi_fernet().decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise CredentialDecryptionError(
            "credential ciphertext cannot be decrypted with the configured "
            f"{SETTING} (made under a retired key, or corrupted)"
        ) from None
    try:
        payload = json.loads(plaintext)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), str):
        raise CredentialDecryptionError("credential ciphertext has an unexpected payload")
    return payload


def _check_binding(payload: dict, credential: ProviderCredential) -> None:
    if payload.get("b") != credential.brand_id or payload.get("c") != credential.pk:
        raise CredentialDecryptionError("credential ciphertext does not belong to this credential")


def decrypt_api_key(credential: ProviderCredential) -> str:
    """The plaintext API key of ``credential``.

    Raises ``CredentialDecryptionError`` when the token is empty, undecryptable under every
    configured key, or bound to another brand or credential; ``ImproperlyConfigured`` when
    no usable key is configured. Never returns another row's key.
    """
    token = credential.encrypted_api_key
    if not token:
        raise CredentialDecryptionError("credential has no stored API key")
    payload = _open(token)
    _check_binding(payload, credential)
    return payload["k"]


WEBHOOK_BINDING = "webhook"


def encrypt_webhook_secret(*, brand_id: int, secret: str) -> str:
    """A Fernet token of a brand's webhook signing secret, bound to the brand (a token
    copied into another brand's row, or a credential's, does not decrypt as this)."""
    payload = json.dumps(
        {"b": brand_id, "c": WEBHOOK_BINDING, "k": secret}, separators=(",", ":")
    ).encode()
    return multi_fernet().encrypt(payload).decode("ascii")


def decrypt_webhook_secret(*, brand_id: int, token: str) -> str:
    """The plaintext of ``encrypt_webhook_secret``; ``CredentialDecryptionError`` if the
    token is undecryptable or not this brand's webhook secret."""
    payload = _open(token)
    if payload.get("b") != brand_id or payload.get("c") != WEBHOOK_BINDING:
        raise CredentialDecryptionError("webhook secret ciphertext does not belong to this brand")
    return payload["k"]


def webhook_signature_headers(secret: str, body: bytes) -> dict[str, str]:
    """``X-MEGAHUB-Timestamp`` (Unix seconds, now) and ``X-MEGAHUB-Signature:
    sha256=<hex>``: the HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"X-MEGAHUB-Timestamp": timestamp, "X-MEGAHUB-Signature": f"sha256={digest.hexdigest()}"}


@dataclass
class WebhookSecretsAudit:
    total: int = 0
    stale: int = 0  # not under the newest key
    rotated: int = 0
    failed: list[str] = field(default_factory=list)  # slugs of brands whose secret is lost


def webhook_secrets_audit(*, rotate: bool) -> WebhookSecretsAudit:
    """Every brand's webhook secret: is it under the newest key (and with ``rotate``,
    re-encrypt it there, as ``credential_rotate_encryption`` does for API keys)."""
    from .budget_models import BrandQuota

    audit = WebhookSecretsAudit()
    newest = parse_keys(_raw_setting())[0]
    quotas = BrandQuota.objects.exclude(webhook_secret_encrypted="").select_related("brand")
    for quota in quotas:
        audit.total += 1
        token = quota.webhook_secret_encrypted
        try:
            decrypt_webhook_secret(brand_id=quota.brand_id, token=token)
        except CredentialDecryptionError:
            audit.failed.append(quota.brand.slug)
            continue
        try:
            newest.decrypt(token.encode("ascii"))
            continue
        except InvalidToken:
            audit.stale += 1
        if rotate:
            rotated = multi_fernet().rotate(token.encode("ascii")).decode("ascii")
            BrandQuota.objects.filter(pk=quota.pk, webhook_secret_encrypted=token).update(
                webhook_secret_encrypted=rotated
            )
            refcache_changed()
            audit.rotated += 1
    return audit


def is_under_newest_key(credential: ProviderCredential) -> bool:
    """True when the stored token decrypts under the newest configured key."""
    newest = parse_keys(_raw_setting())[0]
    try:
        newest.decrypt(credential.encrypted_api_key.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


def credential_rotate_encryption(credential: ProviderCredential) -> bool:
    """Re-encrypt ``credential``'s token under the newest key; True if it changed.

    ``MultiFernet.rotate`` semantics (the token's original timestamp is kept). A token that
    is already under the newest key is left alone (False, no write), so running this over
    every credential is idempotent. The binding is checked first: a token that does not
    belong to the row raises ``CredentialDecryptionError`` rather than being re-blessed.
    Sets ``rotated_at``; does not change ``key_set_at`` (the key itself is unchanged).
    Takes a row lock: call inside or outside a transaction.
    """
    with transaction.atomic():
        locked = ProviderCredential.objects.select_for_update().get(pk=credential.pk)
        _check_binding(_open(locked.encrypted_api_key), locked)
        if is_under_newest_key(locked):
            return False
        token = multi_fernet().rotate(locked.encrypted_api_key.encode("ascii")).decode("ascii")
        now = timezone.now()
        ProviderCredential.objects.filter(pk=locked.pk).update(
            encrypted_api_key=token, rotated_at=now, updated_at=now
        )
    refcache_changed()
    credential.encrypted_api_key = token
    credential.rotated_at = now
    credential.updated_at = now
    return True


def require_encryption_key() -> None:
    """Stop a server or worker process from starting without a usable key (no silent
    plaintext fallback): called when the WSGI/ASGI application and Celery workers boot."""
    problem = check_configuration()
    if problem is not None:
        raise ImproperlyConfigured(f"MEGAHUB cannot start: {problem}")
