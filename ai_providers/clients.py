"""The one door to the providers: ``openai`` SDK clients per credential (STYLE habit 8).

* Clients are built with ``max_retries=0`` (our executor is the only place that retries)
  and an explicit timeout from ``settings.AI_PROVIDER_TIMEOUTS[provider]``.
* A client is cached per credential and reused across requests and threads (the SDK
  client is thread-safe and keeps its connection pool); it is rebuilt when the credential's
  ciphertext, endpoint, API version, update time or timeout changes.
* Every SDK or transport failure leaves this module as an ``ai_core.provider_errors``
  ``ProviderError`` (``raise … from e``) whose message is ours: class, status and the
  provider's error message, truncated and scrubbed of anything that looks like a key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
import openai
import pydantic
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from openai._httpx2 import request_exceptions, timeout_exceptions

from ai_core.provider_errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)

from .crypto import decrypt_api_key
from .errors import CredentialDecryptionError
from .models import Provider, ProviderCredential

logger = logging.getLogger("megahub.providers")

DEFAULT_TIMEOUT = 30.0
CLIENT_CACHE_SIZE = 256
MESSAGE_MAX_CHARS = 300

# Exceptions a provider call may raise that are the provider's fault or the network's,
# never a bug of ours: these (and only these) are classified.
SDK_ERRORS: tuple[type[BaseException], ...] = (
    openai.OpenAIError,
    httpx2.HTTPError,
    json.JSONDecodeError,
    pydantic.ValidationError,
)

SDKClient = openai.OpenAI | openai.AzureOpenAI


@dataclass(frozen=True)
class ChatResult:
    """One chat completion. ``model`` is the model we asked for (what prices apply to);
    ``provider_model`` is what the provider reports (an Azure deployment may differ).
    ``usage`` is None when the response carried no usage block."""

    content: str | None
    finish_reason: str | None
    usage: dict[str, int] | None
    response_id: str | None
    model: str
    provider_model: str | None = None
    request_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = field(default=None)
    # What else the provider answered that a client may read, as it sent it (only what it
    # sent, not null): the choice's ``logprobs``, the message's ``refusal``,
    # ``annotations`` and ``audio``, the completion's ``system_fingerprint`` and
    # ``service_tier``.
    extras: dict[str, Any] | None = field(default=None)


EXTRA_CHOICE_FIELDS = ("logprobs",)
EXTRA_MESSAGE_FIELDS = ("refusal", "annotations", "audio")
EXTRA_COMPLETION_FIELDS = ("system_fingerprint", "service_tier")


def completion_extras(
    completion: dict[str, Any], choice: dict[str, Any], message: dict[str, Any]
) -> dict[str, Any] | None:
    extras = {
        name: source[name]
        for source, names in (
            (choice, EXTRA_CHOICE_FIELDS),
            (message, EXTRA_MESSAGE_FIELDS),
            (completion, EXTRA_COMPLETION_FIELDS),
        )
        for name in names
        if source.get(name) is not None
    }
    return extras or None


# -- client cache -------------------------------------------------------------------------

_cache_lock = threading.Lock()
# credential id -> (fingerprint, its clients by shard, built on first use).
_cache: OrderedDict[int, tuple[str, list[SDKClient | None]]] = OrderedDict()
# Each credential's calls are spread over this many clients, a thread always using the
# same one: an httpx connection pool walks all its connections and waiting requests on
# every request, so one pool shared by 128 threads with calls in flight costs measurable
# CPU (docs/performance.md); 8 pools of 16 do not.
CLIENT_SHARDS = 8
_thread = threading.local()
_shards = itertools.count()


def _shard() -> int:
    shard = getattr(_thread, "shard", None)
    if shard is None:
        shard = _thread.shard = next(_shards) % CLIENT_SHARDS
    return shard


def provider_timeout(provider_code: str) -> float:
    """The configured per-call timeout in seconds for ``provider_code`` (30 by default)."""
    timeouts = getattr(settings, "AI_PROVIDER_TIMEOUTS", None) or {}
    return float(timeouts.get(provider_code, DEFAULT_TIMEOUT))


def _fingerprint(credential: ProviderCredential, timeout: float) -> str:
    updated = credential.updated_at.isoformat() if credential.updated_at else ""
    parts = [
        credential.provider.code,
        credential.encrypted_api_key,
        credential.api_base,
        credential.api_version,
        updated,
        repr(timeout),
        credential.provider.api_base,
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def client_cache_invalidate(credential_id: int | None = None) -> None:
    """Drop the cached client of one credential, or all of them (``None``)."""
    with _cache_lock:
        if credential_id is None:
            _cache.clear()
        else:
            _cache.pop(credential_id, None)


@receiver(setting_changed)
def _clear_clients_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in ("AI_PROVIDER_TIMEOUTS", "AI_ENCRYPTION_KEY"):
        client_cache_invalidate()


def _build_client(credential: ProviderCredential, timeout: float) -> SDKClient:
    api_key = decrypt_api_key(credential)
    provider = credential.provider
    if provider.code == Provider.Code.AZURE_OPENAI:
        return openai.AzureOpenAI(
            azure_endpoint=credential.api_base,
            api_version=credential.api_version,
            api_key=api_key,
            max_retries=0,
            timeout=timeout,
        )
    # Always explicit, so OPENAI_BASE_URL in the environment never redirects our calls.
    base_url = credential.api_base or provider.api_base
    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)


def client_for_credential(credential: ProviderCredential) -> SDKClient:
    """The cached SDK client for ``credential`` (built on first use or after a change).

    Thread-safe. Raises ``CredentialDecryptionError`` if the stored key cannot be
    decrypted, ``ImproperlyConfigured`` if no encryption key is configured.
    """
    timeout = provider_timeout(credential.provider.code)
    fingerprint = _fingerprint(credential, timeout)
    shard = _shard()
    with _cache_lock:
        cached = _cache.get(credential.pk)
        if cached is None or cached[0] != fingerprint:
            cached = _cache[credential.pk] = (fingerprint, [None] * CLIENT_SHARDS)
        _cache.move_to_end(credential.pk)
        client = cached[1][shard]
        if client is not None:
            return client
        # Built under the lock: two threads never build two clients for one shard.
        client = cached[1][shard] = _build_client(credential, timeout)
        while len(_cache) > CLIENT_CACHE_SIZE:
            _cache.popitem(last=False)
    logger.info(
        "provider.client.built",
        extra={
            "credential_id": credential.pk,
            "provider": credential.provider.code,
            "timeout_s": timeout,
        },
    )
    return client


# -- error classification -------------------------------------------------------------------

_KEYLIKE = re.compile(
    r"(?:\b(?:sk|mh|pk|rk|sess)[-_][A-Za-z0-9_\-*.]{4,}"  # sk-..., sk-proj-..., masked echoes
    r"|\bAIza[A-Za-z0-9_\-]{10,}"  # Google API keys
    r"|\b[A-Za-z0-9_\-]{32,}\b)"  # any long opaque token (Azure keys are 32 hex chars)
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets and anything key-like replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    None when absent or unparseable; never negative.
    """
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _provider_message(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return None


def _provider_param(exc: openai.APIStatusError) -> str | None:
    """The parameter a provider's error names (``error.param``): a field name, kept only
    when it looks like one."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    param = error.get("param") if isinstance(error, dict) else None
    if isinstance(param, str) and re.fullmatch(r"[A-Za-z0-9_.\[\]-]{1,64}", param):
        return param
    return None


def _status_error_class(status: int) -> type[ProviderError]:
    if status in (401, 403):
        return ProviderAuthError
    if status == 429:
        return ProviderRateLimited
    if status == 408:
        return ProviderTimeout
    if status >= 500:
        return ProviderServerError
    return ProviderBadRequest


def classify_sdk_error(
    exc: BaseException, *, provider: str, model: str | None, api_key: str | None = None
) -> ProviderError:
    """Our typed error for an SDK / transport exception (the caller does ``raise … from e``).

    APITimeoutError → ProviderTimeout; APIConnectionError → ProviderConnectionError;
    401/403 → ProviderAuthError; 429 → ProviderRateLimited (``retry_after`` from the
    headers); 400/404/409/422 and other 4xx → ProviderBadRequest; 5xx → ProviderServerError;
    a malformed 200 body → ProviderServerError. The message is built here (never the SDK's,
    which may echo the request), truncated, and scrubbed of ``api_key`` and key-like text.
    """
    status: int | None = None
    retry_after: float | None = None
    detail: str | None = None
    param: str | None = None
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        cls: type[ProviderError] = ProviderTimeout
        summary = "request timed out"
    elif isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        cls = ProviderConnectionError
        summary = "connection failed"
    elif isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        cls = _status_error_class(status)
        retry_after = parse_retry_after(exc.response.headers)
        detail = _provider_message(exc)
        param = _provider_param(exc)
        summary = f"HTTP {status}"
    elif isinstance(exc, openai.APIResponseValidationError):
        status = exc.status_code
        cls = ProviderServerError
        summary = f"malformed response body (HTTP {status})"
    elif isinstance(exc, json.JSONDecodeError | pydantic.ValidationError):
        cls = ProviderServerError
        summary = "malformed response body"
    else:
        cls = ProviderServerError
        summary = "unexpected provider error"
    message = f"{provider} {type(exc).__name__}: {summary}"
    if detail:
        message = f"{message}: {detail}"
    # Scrubbed whole, then cut: cut first, a key straddling the cut would lose the part
    # that makes it recognisable and keep the rest.
    message = scrub(message, [api_key] if api_key else [])
    if len(message) > MESSAGE_MAX_CHARS:
        message = message[: MESSAGE_MAX_CHARS - 3] + "..."
    return cls(
        message,
        status_code=status,
        retry_after=retry_after,
        provider=provider,
        model=model,
        param=param,
    )


# -- calls ------------------------------------------------------------------------------------


def _client_or_error(credential: ProviderCredential, *, model: str | None) -> SDKClient:
    try:
        return client_for_credential(credential)
    except CredentialDecryptionError as exc:
        raise ProviderAuthError(
            f"{credential.provider.code} credential {credential.pk} is unusable: {exc.detail}",
            provider=credential.provider.code,
            model=model,
        ) from exc


def usage_from_sdk(raw_usage: Any) -> dict[str, int] | None:
    """The usage block — the SDK's object or the response's JSON — as our usage dict (None
    when there is none)."""
    if raw_usage is None:
        return None
    get = _get if isinstance(raw_usage, Mapping) else getattr
    prompt_details = get(raw_usage, "prompt_tokens_details", None)
    completion_details = get(raw_usage, "completion_tokens_details", None)
    prompt = int(get(raw_usage, "prompt_tokens", 0) or 0)
    completion = int(get(raw_usage, "completion_tokens", 0) or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(get(raw_usage, "total_tokens", 0) or prompt + completion),
        "cached_tokens": int(get(prompt_details, "cached_tokens", 0) or 0),
        "reasoning_tokens": int(get(completion_details, "reasoning_tokens", 0) or 0),
    }


def _get(mapping: Mapping[str, Any] | None, name: str, default: Any) -> Any:
    return default if mapping is None else mapping.get(name, default)


def sdk_model_for(credential: ProviderCredential, model: str) -> str:
    """The ``model`` argument for the SDK: the Azure deployment name, else the model name.

    Raises ``ProviderUnavailable`` (fallback allowed) when an Azure credential has no
    deployment for ``model``.
    """
    if credential.provider.code != Provider.Code.AZURE_OPENAI:
        return model
    deployment = (credential.deployments or {}).get(model)
    if not deployment:
        raise ProviderUnavailable(
            f"azure_openai credential {credential.pk} has no deployment for {model}.",
            provider=credential.provider.code,
            model=model,
        )
    return deployment


def chat_completion(
    credential: ProviderCredential,
    *,
    model: str,
    kwargs: dict[str, Any],
    timeout: float | None = None,
    extra_headers: dict[str, str] | None = None,
) -> ChatResult:
    """One non-streaming chat completion attempt (no retry) on ``credential``.

    ``kwargs`` are the validated request parameters (``messages``, ``temperature``, …)
    without ``model``; ``model`` is the logical model name (mapped to the Azure deployment
    here). ``timeout`` overrides the provider's configured timeout for this call;
    ``extra_headers`` are sent as is (e.g. ``traceparent``). Raises ``ProviderError`` only.
    """
    provider = credential.provider.code
    if kwargs.get("stream"):
        raise ValueError("chat_completion does not stream; call without stream=True.")
    client = _client_or_error(credential, model=model)
    params = {k: v for k, v in kwargs.items() if k not in ("model", "stream", "timeout")}
    params["model"] = sdk_model_for(credential, model)
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if extra_headers:
        options["headers"] = extra_headers
    try:
        # The SDK's generic POST (its documented way to call any endpoint), not the typed
        # ``chat.completions.create``: same request, client, retries and errors, without
        # re-transforming parameters we already validated or building response models we
        # would only read five fields of (about 0.6 ms of CPU per call, see
        # docs/performance.md).
        response = client.post(
            "/chat/completions", cast_to=httpx2.Response, body=params, options=options
        )
        completion = response.json()  # not JSON: JSONDecodeError, classified below
        choices = completion.get("choices") if isinstance(completion, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise ProviderServerError(
                f"{provider} returned a completion without choices",
                provider=provider,
                model=model,
            )
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            message = {}
        return ChatResult(
            content=message.get("content"),
            finish_reason=choice.get("finish_reason"),
            usage=usage_from_sdk(completion.get("usage")),
            response_id=completion.get("id"),
            model=model,
            provider_model=completion.get("model"),
            request_id=response.headers.get("x-request-id"),
            tool_calls=message.get("tool_calls") or None,
            extras=completion_extras(completion, choice, message),
        )
    except SDK_ERRORS as exc:
        raise classify_sdk_error(
            exc, provider=provider, model=model, api_key=_known_key(client)
        ) from exc


def list_models(credential: ProviderCredential, *, timeout: float | None = None) -> list[str]:
    """The model ids the credential's endpoint lists (a cheap authenticated connection test).

    Raises ``ProviderError`` only.
    """
    provider = credential.provider.code
    client = _client_or_error(credential, model=None)
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    try:
        return [item.id for item in client.models.list(**options)]
    except SDK_ERRORS as exc:
        raise classify_sdk_error(
            exc, provider=provider, model=None, api_key=_known_key(client)
        ) from exc


def _known_key(client: SDKClient) -> str | None:
    key = getattr(client, "api_key", None)
    return key if isinstance(key, str) else None


@dataclass
class ChatStream:
    """An open streamed completion, as batches of chunks: each chunk is the data of one
    server-sent event (the provider's JSON object, as bytes, unparsed), and each batch the
    chunks that one piece of the body completed, as the HTTP client hands it over (one HTTP
    chunk: usually one event). ``first`` was read while connecting (so HTTP errors surfaced
    as ProviderError then), ``rest`` yields the next batches."""

    first: list[bytes]
    rest: Any
    provider: str
    model: str

    def batches(self) -> Any:
        yield self.first
        try:
            yield from self.rest
        except SDK_ERRORS as exc:
            raise classify_sdk_error(exc, provider=self.provider, model=self.model) from exc

    def close(self) -> None:
        self.rest.close()


def sse_data(buffer: bytes) -> tuple[list[bytes], bytes, bool]:
    """Split server-sent events off the start of ``buffer`` (line ends already ``\n``):
    the data of each complete event (its ``data:`` lines joined, as the SDK's decoder does;
    events without data — comments, keep-alives — are skipped), the incomplete rest, and
    whether ``data: [DONE]`` came (what follows it is dropped)."""
    *events, rest = buffer.split(b"\n\n")
    datas: list[bytes] = []
    for event in events:
        if event.startswith(b"data:") and b"\n" not in event:  # the usual one-line event
            data = event[6:] if event[5:6] == b" " else event[5:]
        else:
            lines = [
                line[6:] if line[5:6] == b" " else line[5:]
                for line in event.split(b"\n")
                if line.startswith(b"data:")
            ]
            if not lines:
                continue
            data = b"\n".join(lines)
        if data.startswith(b"[DONE]"):
            return datas, b"", True
        datas.append(data)
    return datas, rest, False


def sse_line_ends(buffer: bytes) -> bytes:
    """``buffer`` with CRLF and CR line ends made ``\\n``; a CR that ends it stays (the next
    read may start with the LF of its CRLF)."""
    if b"\r" not in buffer:
        return buffer
    keep = buffer.endswith(b"\r")
    body = (buffer[:-1] if keep else buffer).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return body + b"\r" if keep else body


class _SSEBatches(openai.Stream[object]):
    """The SDK's stream of a streamed completion (same request, status checks, retries before
    the body and connection errors), read as batches of raw chunks instead of one parsed
    object per event: a relay writes them on as they came, and parses them once, at the
    end. A chunk that is an error object raises the SDK's ``APIError``, as its own stream
    does."""

    def __stream__(self) -> Any:
        response = self.response
        buffer = b""
        reads = response.iter_bytes()
        try:
            while True:
                try:
                    data = next(reads, None)
                except timeout_exceptions() as exc:
                    raise openai.APITimeoutError(request=response.request) from exc
                except request_exceptions() as exc:
                    raise openai.APIConnectionError(request=response.request) from exc
                if data is None:  # the body ended: a last event may lack its blank line
                    datas, _, _ = sse_data(buffer.strip(b"\r\n") + b"\n\n")
                    if datas:
                        yield self._checked(datas)
                    return
                datas, buffer, done = sse_data(sse_line_ends(buffer + data))
                if datas:
                    yield self._checked(datas)
                if done:
                    return
        finally:
            response.close()

    def _checked(self, datas: list[bytes]) -> list[bytes]:
        for data in datas:
            if b'"error"' in data:
                try:
                    parsed = json.loads(data)
                except ValueError:
                    continue
                if isinstance(parsed, dict) and parsed.get("error"):
                    error = parsed["error"]
                    message = error.get("message") if isinstance(error, dict) else None
                    raise openai.APIError(
                        message=message
                        if isinstance(message, str) and message
                        else "An error occurred during streaming",
                        request=self.response.request,
                        body=error,
                    )
        return datas


def chat_completion_stream(
    credential: ProviderCredential,
    *,
    model: str,
    kwargs: dict[str, Any],
    timeout: float | None = None,
    extra_headers: dict[str, str] | None = None,
) -> ChatStream:
    """Open a streamed chat completion (usage requested in the final chunk) and read its
    first batch of chunks (``ChatStream``). Raises ``ProviderError`` only; later batches
    may raise it from ``batches()``.
    """
    provider = credential.provider.code
    client = _client_or_error(credential, model=model)
    params = {k: v for k, v in kwargs.items() if k not in ("model", "stream", "timeout")}
    params.update(
        model=sdk_model_for(credential, model),
        stream=True,
        stream_options={"include_usage": True},
    )
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if extra_headers:
        options["headers"] = extra_headers
    try:
        # As in ``chat_completion``: the SDK's generic post, with a stream class that hands
        # over the provider's chunks unparsed (no object per chunk, parsed then serialized
        # again).
        stream = client.post(
            "/chat/completions",
            cast_to=object,
            body=params,
            options=options,
            stream=True,
            stream_cls=_SSEBatches,
        )
        first = next(stream)
    except StopIteration:
        raise ProviderServerError(
            f"{provider} closed the stream without a chunk", provider=provider, model=model
        ) from None
    except SDK_ERRORS as exc:
        raise classify_sdk_error(
            exc, provider=provider, model=model, api_key=_known_key(client)
        ) from exc
    return ChatStream(first=first, rest=stream, provider=provider, model=model)
