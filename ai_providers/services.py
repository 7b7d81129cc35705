"""Writes for providers and credentials.

Credential services validate everything before writing, raise ``CredentialInvalid`` /
``UnknownProvider`` (400, with ``field_errors``), and never log or echo the API key.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ai_core.models import Brand
from ai_core.provider_errors import ProviderError

from .circuit import circuit_record_outcome, circuit_reset
from .clients import client_cache_invalidate, list_models, provider_timeout
from .crypto import (
    credential_rotate_encryption,
    decrypt_api_key,
    encrypt_api_key,
    is_under_newest_key,
    key_last4,
)
from .errors import CredentialDecryptionError, CredentialInvalid, UnknownProvider
from .models import Provider, ProviderCredential

logger = logging.getLogger("megahub.providers")

OPENAI_MODELS = [
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4-turbo",
]

# The providers we ship, in fallback order after a model's primary provider. Anthropic and
# Google are reached through their OpenAI-compatible endpoints with the same SDK.
PROVIDER_CATALOG: list[dict[str, Any]] = [
    {
        "code": Provider.Code.OPENAI,
        "name": "OpenAI",
        "api_base": "https://api.openai.com/v1",
        "models": OPENAI_MODELS,
    },
    {
        # No default endpoint: every Azure credential brings its resource endpoint.
        "code": Provider.Code.AZURE_OPENAI,
        "name": "Azure OpenAI",
        "api_base": "",
        "models": OPENAI_MODELS,
    },
    {
        "code": Provider.Code.ANTHROPIC,
        "name": "Anthropic",
        "api_base": "https://api.anthropic.com/v1/",
        "models": ["claude-opus-4-1", "claude-sonnet-4-5", "claude-3-5-haiku-latest"],
    },
    {
        "code": Provider.Code.GOOGLE,
        "name": "Google",
        "api_base": "https://generativelanguage.googleapis.com/v1beta/openai/",
        "models": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash"],
    },
]

CREDENTIAL_FIELDS = frozenset(
    {"name", "api_key", "api_base", "api_version", "deployments", "is_active", "priority"}
)
API_KEY_MIN_LENGTH = 8
API_KEY_MAX_LENGTH = 1024
DEFAULT_CONNECTION_TEST_TIMEOUT = 10.0


def providers_seed() -> tuple[int, int]:
    """Create or complete the four catalogue providers; return ``(created, updated)``.

    Idempotent: a second run returns ``(0, 0)`` and writes nothing. An existing row gets
    the catalogue's name and api_base back, and any catalogue model it lacks appended;
    models an admin added and ``is_active`` are kept.
    """
    created = updated = 0
    with transaction.atomic():
        for entry in PROVIDER_CATALOG:
            provider, was_created = Provider.objects.select_for_update().get_or_create(
                code=entry["code"],
                defaults={
                    "name": entry["name"],
                    "api_base": entry["api_base"],
                    "models": list(entry["models"]),
                },
            )
            if was_created:
                created += 1
                continue
            changed = []
            for field in ("name", "api_base"):
                if getattr(provider, field) != entry[field]:
                    setattr(provider, field, entry[field])
                    changed.append(field)
            current = list(provider.models or [])
            missing = [m for m in entry["models"] if m not in current]
            if missing or not isinstance(provider.models, list):
                provider.models = current + missing
                changed.append("models")
            if changed:
                provider.save(update_fields=changed)
                updated += 1
    logger.info(
        "providers.seeded", extra={"providers_created": created, "providers_updated": updated}
    )
    return created, updated


def _provider_for_code(code: object) -> Provider:
    """The Provider row for ``code``; a catalogue provider not yet seeded is created."""
    valid = [str(c) for c in Provider.Code.values]
    if not isinstance(code, str) or code not in valid:
        raise UnknownProvider(
            f"Unknown provider {str(code)[:64]!r}.",
            field_errors={"provider": [f"Must be one of: {', '.join(valid)}."]},
            suggestions=valid,
        )
    provider = Provider.objects.filter(code=code).first()
    if provider is None:
        providers_seed()
        provider = Provider.objects.get(code=code)
    if not provider.is_active:
        raise CredentialInvalid(
            f"Provider {code} is disabled.",
            field_errors={"provider": [f"Provider {code} is disabled."]},
        )
    return provider


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def _validate(provider: Provider, state: dict[str, Any], *, new_key: str | None) -> None:
    """Raise ``CredentialInvalid`` with every problem of the credential ``state`` at once."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    name = state["name"]
    if not isinstance(name, str) or not name.strip():
        add("name", "This field is required.")
    elif len(name) > 100:
        add("name", "Ensure this field has no more than 100 characters.")

    if new_key is not None:
        if not isinstance(new_key, str) or not new_key.strip():
            add("api_key", "This field is required.")
        elif new_key != new_key.strip() or any(c.isspace() for c in new_key):
            add("api_key", "The API key must not contain whitespace.")
        elif not API_KEY_MIN_LENGTH <= len(new_key) <= API_KEY_MAX_LENGTH:
            add(
                "api_key",
                f"The API key must be {API_KEY_MIN_LENGTH} to {API_KEY_MAX_LENGTH} characters.",
            )

    api_base = state["api_base"]
    if not isinstance(api_base, str):
        add("api_base", "Must be an http(s) URL.")
    elif api_base and (not _is_http_url(api_base) or len(api_base) > 500):
        add("api_base", "Must be an http(s) URL of at most 500 characters.")

    api_version = state["api_version"]
    deployments = state["deployments"]
    is_azure = provider.code == Provider.Code.AZURE_OPENAI
    if not isinstance(api_version, str) or len(api_version) > 32:
        add("api_version", "Must be a string of at most 32 characters.")
    elif is_azure and not api_version:
        add("api_version", "Azure OpenAI needs an api_version (e.g. 2024-10-21).")
    elif not is_azure and api_version:
        add("api_version", "Only used by azure_openai credentials.")

    if is_azure and not api_base:
        add("api_base", "Azure OpenAI needs the resource endpoint as api_base.")

    if not isinstance(deployments, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v and "/" not in v
        for k, v in deployments.items()
    ):
        add("deployments", "Must be an object mapping model names to deployment names.")
    elif deployments and not is_azure:
        add("deployments", "Only used by azure_openai credentials.")

    for field in ("is_active",):
        if not isinstance(state[field], bool):
            add(field, "Must be a boolean.")
    priority = state["priority"]
    if isinstance(priority, bool) or not isinstance(priority, int):
        add("priority", "Must be an integer.")
    elif not -1_000_000 <= priority <= 1_000_000:
        add("priority", "Must be between -1000000 and 1000000.")

    if errors:
        raise CredentialInvalid(field_errors=errors)


def _name_taken(*, brand_id: int, provider: Provider, name: str, exclude_pk: int | None) -> bool:
    qs = ProviderCredential.objects.filter(brand_id=brand_id, provider=provider, name=name)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


def _duplicate_name() -> CredentialInvalid:
    return CredentialInvalid(
        field_errors={"name": ["This brand already has a credential with this name here."]}
    )


def credential_validate(
    *,
    brand_id: int,
    provider_code: str,
    state: dict[str, Any],
    new_key: str | None,
    exclude_pk: int | None = None,
) -> None:
    """Raise ``CredentialInvalid`` / ``UnknownProvider`` if this credential state would be
    refused; writes nothing. ``state`` has ``name, api_base, api_version, deployments,
    is_active, priority``. The services re-check under their transaction; this is for forms
    that want the errors before saving (the admin)."""
    provider = _provider_for_code(provider_code)
    _validate(provider, state, new_key=new_key)
    if _name_taken(brand_id=brand_id, provider=provider, name=state["name"], exclude_pk=exclude_pk):
        raise _duplicate_name()


def credential_create(
    *,
    brand: Brand,
    provider_code: str,
    name: str,
    api_key: str,
    api_base: str | None = None,
    api_version: str | None = None,
    deployments: dict[str, str] | None = None,
    is_active: bool = True,
    priority: int = 0,
) -> ProviderCredential:
    """Create a credential for ``brand`` with ``api_key`` encrypted and bound to the new row.

    One transaction: insert (to get the id the ciphertext is bound to), then store the token.
    No plaintext is ever written, not even transiently.
    """
    provider = _provider_for_code(provider_code)
    state = {
        "name": name.strip() if isinstance(name, str) else name,
        "api_base": api_base or "",
        "api_version": api_version or "",
        "deployments": deployments if deployments is not None else {},
        "is_active": is_active,
        "priority": priority,
    }
    _validate(provider, state, new_key=api_key)
    if _name_taken(brand_id=brand.pk, provider=provider, name=state["name"], exclude_pk=None):
        raise _duplicate_name()
    now = timezone.now()
    try:
        with transaction.atomic():
            credential = ProviderCredential.objects.create(
                brand=brand,
                provider=provider,
                encrypted_api_key="",
                key_last4=key_last4(api_key),
                key_set_at=now,
                rotated_at=now,
                **state,
            )
            credential.encrypted_api_key = encrypt_api_key(
                brand_id=brand.pk, credential_id=credential.pk, api_key=api_key
            )
            credential.save(update_fields=["encrypted_api_key"])
    except IntegrityError:
        # Lost a race with a concurrent create of the same name.
        raise _duplicate_name() from None
    logger.info(
        "credential.created",
        extra={"brand_id": brand.pk, "credential_id": credential.pk, "provider": provider.code},
    )
    return credential


def credential_update(*, credential: ProviderCredential, **fields: Any) -> ProviderCredential:
    """Change any of ``CREDENTIAL_FIELDS``; a new ``api_key`` is re-encrypted and re-dated.

    The provider and brand never change. The whole resulting state is validated (e.g. an
    Azure credential keeps its api_version). Locks the row; returns the refreshed credential.
    A new key, ``api_base`` or ``api_version`` resets the credential's circuit breaker.
    """
    unknown = set(fields) - CREDENTIAL_FIELDS
    if unknown:
        raise CredentialInvalid(
            field_errors={f: ["This field cannot be changed."] for f in sorted(unknown)}
        )
    new_key = fields.pop("api_key", None)
    endpoint_changed = False
    try:
        with transaction.atomic():
            locked = (
                ProviderCredential.objects.select_for_update()
                .select_related("provider")
                .get(pk=credential.pk)
            )
            state = {
                "name": locked.name,
                "api_base": locked.api_base,
                "api_version": locked.api_version,
                "deployments": locked.deployments,
                "is_active": locked.is_active,
                "priority": locked.priority,
            }
            for field, value in fields.items():
                if field in ("api_base", "api_version") and value is None:
                    value = ""
                elif field == "deployments" and value is None:
                    value = {}
                elif field == "name" and isinstance(value, str):
                    value = value.strip()
                state[field] = value
            _validate(locked.provider, state, new_key=new_key)
            if "name" in fields and _name_taken(
                brand_id=locked.brand_id,
                provider=locked.provider,
                name=state["name"],
                exclude_pk=locked.pk,
            ):
                raise _duplicate_name()
            # A new key or endpoint: the circuit breaker's state was about the old one.
            endpoint_changed = new_key is not None or any(
                state[f] != getattr(locked, f) for f in ("api_base", "api_version")
            )
            for field, value in state.items():
                setattr(locked, field, value)
            update_fields = [*state, "updated_at"]
            if new_key is not None:
                now = timezone.now()
                locked.encrypted_api_key = encrypt_api_key(
                    brand_id=locked.brand_id, credential_id=locked.pk, api_key=new_key
                )
                locked.key_last4 = key_last4(new_key)
                locked.key_set_at = now
                locked.rotated_at = now
                update_fields += ["encrypted_api_key", "key_last4", "key_set_at", "rotated_at"]
            locked.save(update_fields=update_fields)
    except IntegrityError:
        raise _duplicate_name() from None
    if endpoint_changed:
        circuit_reset(locked)
    logger.info(
        "credential.updated",
        extra={
            "brand_id": locked.brand_id,
            "credential_id": locked.pk,
            "fields": sorted([*fields, *(["api_key"] if new_key is not None else [])]),
        },
    )
    return locked


def credential_delete(*, credential: ProviderCredential) -> None:
    """Delete the credential; its cached SDK client and circuit state go with it."""
    credential_id, brand_id = credential.pk, credential.brand_id
    circuit_reset(credential)
    credential.delete()
    client_cache_invalidate(credential_id)
    logger.info("credential.deleted", extra={"brand_id": brand_id, "credential_id": credential_id})


def credential_mark_used(*, credential: ProviderCredential, min_interval_s: int = 60) -> None:
    """Record that ``credential`` was just used; at most one write per ``min_interval_s``.

    A conditional UPDATE (no lock, no read): concurrent callers write at most once.
    """
    now = timezone.now()
    last = credential.last_used_at
    if last is not None and (now - last).total_seconds() < min_interval_s:
        return
    cutoff = now - timedelta(seconds=min_interval_s)
    ProviderCredential.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff), pk=credential.pk
    ).update(last_used_at=now)
    credential.last_used_at = now


@dataclass(frozen=True)
class ConnectionTestResult:
    """The outcome of one connection test. ``error`` is None or ``{error_class,
    status_code, message}`` (the message is the classified, scrubbed one)."""

    credential: ProviderCredential
    ok: bool
    latency_ms: int
    error: dict[str, Any] | None
    models_count: int | None
    tested_at: datetime


def connection_test_timeout(provider_code: str) -> float:
    """The provider's call timeout, capped by ``AI_CONNECTION_TEST_TIMEOUT`` (default 10 s):
    an interactive test should not hang for the 45 s an Azure completion may take."""
    cap = float(getattr(settings, "AI_CONNECTION_TEST_TIMEOUT", DEFAULT_CONNECTION_TEST_TIMEOUT))
    return min(provider_timeout(provider_code), cap)


def credential_test_connection(*, credential: ProviderCredential) -> ConnectionTestResult:
    """Call the credential's models endpoint once through the SDK and record the outcome.

    Never raises a provider error: a failure is the result (``ok`` False, classified
    ``error``). Stores ``last_test_at/ok/latency_ms/error`` with one UPDATE that leaves
    ``updated_at`` (and so the cached SDK client) alone, and feeds the outcome to the
    credential's circuit breaker: it is a real call to the same endpoint, so a passing test
    closes an open circuit and a 5xx/timeout counts as a failure. Bypasses an open circuit
    (the admin asked for this call). Works on inactive credentials too.
    """
    provider = credential.provider.code
    error: ProviderError | None = None
    models: list[str] | None = None
    started = time.monotonic()
    try:
        models = list_models(credential, timeout=connection_test_timeout(provider))
    except ProviderError as exc:
        error = exc
    latency_ms = round((time.monotonic() - started) * 1000)
    now = timezone.now()
    error_class = type(error).__name__ if error is not None else ""
    ProviderCredential.objects.filter(pk=credential.pk).update(
        last_test_at=now,
        last_test_ok=error is None,
        last_test_latency_ms=latency_ms,
        last_test_error=error_class,
    )
    credential.last_test_at = now
    credential.last_test_ok = error is None
    credential.last_test_latency_ms = latency_ms
    credential.last_test_error = error_class
    circuit_record_outcome(credential, error)
    logger.info(
        "credential.connection_tested",
        extra={
            "brand_id": credential.brand_id,
            "credential_id": credential.pk,
            "provider": provider,
            "ok": error is None,
            "latency_ms": latency_ms,
            "error_class": error_class or None,
            "status_code": error.status_code if error is not None else None,
        },
    )
    return ConnectionTestResult(
        credential=credential,
        ok=error is None,
        latency_ms=latency_ms,
        error=None
        if error is None
        else {
            "error_class": error_class,
            "status_code": error.status_code,
            "message": error.message,
        },
        models_count=None if models is None else len(models),
        tested_at=now,
    )


@dataclass
class CredentialAuditRow:
    """One credential in ``audit_ai_credentials``. ``under_newest_key`` is None when the
    token could not be decrypted (``decrypt_error`` says why, never with key material)."""

    credential: ProviderCredential
    key_age_days: int
    expired: bool
    under_newest_key: bool | None
    rotated: bool = False
    decrypt_error: str | None = None


def unscoped_credentials_audit(*, rotate_encryption: bool = False) -> list[CredentialAuditRow]:
    """Every credential of every brand (unscoped: for the operator's audit command).

    Each token is decrypted (which checks its binding to the row) and the plaintext is
    discarded at once. With ``rotate_encryption``, every decryptable token not under the
    newest ``AI_ENCRYPTION_KEY`` is re-encrypted under it (``credential_rotate_encryption``:
    row-locked, idempotent). Raises ``ImproperlyConfigured`` when no usable key is set.
    """
    rows: list[CredentialAuditRow] = []
    credentials = ProviderCredential.objects.select_related("brand", "provider").order_by(
        "brand__slug", "provider__code", "name", "id"
    )
    for credential in credentials:
        row = CredentialAuditRow(
            credential=credential,
            key_age_days=credential.key_age.days,
            expired=credential.is_key_expired,
            under_newest_key=None,
        )
        rows.append(row)
        try:
            decrypt_api_key(credential)
            row.under_newest_key = is_under_newest_key(credential)
            if rotate_encryption and not row.under_newest_key:
                row.rotated = credential_rotate_encryption(credential)
                row.under_newest_key = True
        except CredentialDecryptionError as exc:
            row.decrypt_error = exc.detail
            logger.warning(
                "credential.audit.decrypt_failed",
                extra={"brand_id": credential.brand_id, "credential_id": credential.pk},
            )
    logger.info(
        "credential.audit.done",
        extra={
            "credentials": len(rows),
            "rotated": sum(r.rotated for r in rows),
            "failed": sum(r.decrypt_error is not None for r in rows),
            "expired": sum(r.expired for r in rows),
        },
    )
    return rows
