"""Reads for providers and credentials. Every credential read is scoped to a brand."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from ai_core.models import Brand
from ai_core.provider_errors import ProviderNotConfigured
from megahub.errors import NotFound
from megahub.refcache import RefCache

from .errors import UnknownProvider
from .models import Provider, ProviderCredential

# Fallback order among non-primary providers (the enum's order: openai, azure_openai,
# anthropic, google).
PROVIDER_ORDER: tuple[str, ...] = tuple(Provider.Code.values)


def provider_list() -> QuerySet[Provider]:
    """All providers (active or not), in code order. Providers are global, not per brand."""
    return Provider.objects.all().order_by("code")


def providers_with_brand_credentials(*, brand: Brand) -> QuerySet[Provider]:
    """All providers in code order, each annotated with the brand's ``credentials_count``
    and ``active_credentials_count`` (counted in the database; other brands' rows never
    count)."""
    mine = Q(credentials__brand=brand)
    return provider_list().annotate(
        credentials_count=Count("credentials", filter=mine),
        active_credentials_count=Count("credentials", filter=mine & Q(credentials__is_active=True)),
    )


def credentials_for_brand(*, brand: Brand) -> QuerySet[ProviderCredential]:
    """The brand's credentials (active or not), provider joined, in selection order."""
    return (
        ProviderCredential.objects.filter(brand=brand)
        .select_related("provider")
        .order_by("provider__code", "priority", "id")
    )


def credential_get(*, brand: Brand, credential_id: object) -> ProviderCredential:
    """The brand's credential ``credential_id``; ``NotFound`` for missing and other brands'."""
    try:
        pk = int(str(credential_id))
    except ValueError:
        raise NotFound("Credential not found.") from None
    credential = credentials_for_brand(brand=brand).filter(pk=pk).first()
    if credential is None:
        raise NotFound("Credential not found.")
    return credential


def credential_for_provider(*, brand: Brand, provider_code: object) -> ProviderCredential:
    """The brand's active credential for ``provider_code`` that calls would use first
    (lowest ``priority``, then oldest).

    ``UnknownProvider`` (400) for a code that is not ours; ``ProviderNotConfigured`` (424)
    when the brand has no active credential for it.
    """
    valid = [str(c) for c in Provider.Code.values]
    if not isinstance(provider_code, str) or provider_code not in valid:
        raise UnknownProvider(
            f"Unknown provider {str(provider_code)[:64]!r}.",
            field_errors={"provider": [f"Must be one of: {', '.join(valid)}."]},
            suggestions=valid,
        )
    credential = (
        credentials_for_brand(brand=brand)
        .filter(provider__code=provider_code, is_active=True)
        .order_by("priority", "id")
        .first()
    )
    if credential is None:
        raise ProviderNotConfigured(
            f"This brand has no active {provider_code} credential.",
            provider=provider_code,
            suggestions=["Add a credential at POST /ai/credentials/."],
        )
    return credential


def _serves(credential: ProviderCredential, model: str) -> bool:
    """Whether ``credential`` can serve ``model``: Azure needs a deployment for it; any other
    provider must list the model in ``Provider.models``."""
    if credential.provider.code == Provider.Code.AZURE_OPENAI:
        return bool((credential.deployments or {}).get(model))
    return model in (credential.provider.models or [])


def model_primary_provider(model: str, providers: list[Provider] | None = None) -> str | None:
    """The code of the provider a model natively belongs to (openai for OpenAI models).

    The first active non-Azure provider, in ``PROVIDER_ORDER``, listing the model; None if
    none does (then only Azure deployments can serve it).
    """
    if providers is None:
        providers = list(Provider.objects.filter(is_active=True))
    for code in PROVIDER_ORDER:
        if code == Provider.Code.AZURE_OPENAI:
            continue
        for provider in providers:
            if provider.code == code and provider.is_active and model in (provider.models or []):
                return code
    return None


# A brand's usable credentials, in order (megahub.refcache: a credential deactivated in
# another process stops being used within AI_REFERENCE_CACHE_SECONDS).
_credentials = RefCache("credentials")


def _usable_credentials(*, brand: Brand) -> QuerySet[ProviderCredential]:
    return (
        ProviderCredential.objects.filter(brand=brand, is_active=True, provider__is_active=True)
        .select_related("provider")
        .order_by("priority", "id")
    )


def credential_for_model(
    *, brand: Brand, provider_code: str, model: str
) -> ProviderCredential | None:
    """The brand's active credential for ``provider_code`` able to serve ``model``.

    Lowest ``priority`` first (then oldest). For Azure the credential must map the model to
    a deployment; for other providers the model must be in the provider's ``models``.
    None when there is none.
    """
    qs = _usable_credentials(brand=brand).filter(provider__code=provider_code)
    if provider_code == Provider.Code.AZURE_OPENAI:
        qs = qs.filter(deployments__has_key=model)
    for credential in qs:
        if _serves(credential, model):
            return credential
    return None


def providers_for_model(*, brand: Brand, model: str) -> list[ProviderCredential]:
    """One credential per provider able to serve ``model`` for ``brand``, in fallback order.

    Order: the model's primary provider (openai for OpenAI models), then azure_openai, then
    the others in ``PROVIDER_ORDER``. Within a provider the credential is the one
    ``credential_for_model`` would pick. Empty list: nothing configured (the caller answers
    424 ``PROVIDER_NOT_CONFIGURED``).
    """
    credentials = _credentials.get(brand.pk, lambda: list(_usable_credentials(brand=brand)))
    primary = model_primary_provider(model, list({c.provider for c in credentials}))
    chosen: dict[str, ProviderCredential] = {}
    for credential in credentials:
        code = credential.provider.code
        if code not in chosen and _serves(credential, model):
            chosen[code] = credential

    def rank(code: str) -> tuple[int, int]:
        if code == primary:
            group = 0
        elif code == Provider.Code.AZURE_OPENAI:
            group = 1
        else:
            group = 2
        order = PROVIDER_ORDER.index(code) if code in PROVIDER_ORDER else len(PROVIDER_ORDER)
        return group, order

    return [chosen[code] for code in sorted(chosen, key=rank)]
