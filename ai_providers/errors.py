"""ai_providers' error codes and exceptions (providers, credentials, encryption).

Provider *call* failures are not here: they are ``ai_core.provider_errors`` (the executor's
taxonomy). These are the errors of managing providers and credentials. No message here
ever contains an API key, plaintext or ciphertext.
"""

from __future__ import annotations

from enum import StrEnum

from megahub.errors import ApplicationError, ValidationFailed


class ProvidersErrorCode(StrEnum):
    UNKNOWN_PROVIDER = "UNKNOWN_PROVIDER"
    CREDENTIAL_DECRYPTION_FAILED = "CREDENTIAL_DECRYPTION_FAILED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    O3_BUDGET_EXCEEDED = "O3_BUDGET_EXCEEDED"
    REASONING_QUOTA_EXCEEDED = "REASONING_QUOTA_EXCEEDED"
    MONTHLY_QUOTA_EXCEEDED = "MONTHLY_QUOTA_EXCEEDED"


class UnknownProvider(ApplicationError):
    """400: a provider code that is not one of ours (``suggestions`` lists the valid ones)."""

    status_code = 400
    error_code = ProvidersErrorCode.UNKNOWN_PROVIDER
    default_detail = "Unknown provider."


class CredentialInvalid(ValidationFailed):
    """400 VALIDATION_ERROR with ``field_errors`` naming each bad credential field."""

    default_detail = "Invalid credential."


class CredentialDecryptionError(ApplicationError):
    """A stored credential cannot be turned back into its API key.

    Raised when the ciphertext was made under a key no longer in ``AI_ENCRYPTION_KEY``, was
    tampered with, or belongs to another credential (a token copied between rows). Never
    carries the token or any part of the key. A server-side state problem, hence a 500; the
    fix is to set the credential's API key again.
    """

    status_code = 500
    error_code = ProvidersErrorCode.CREDENTIAL_DECRYPTION_FAILED
    default_detail = "The stored credential could not be decrypted."

    def __init__(self, detail: str | None = None, **kwargs: object) -> None:
        kwargs.setdefault("suggestions", ["Set this credential's API key again."])
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
