"""``manage.py ai_health_check``: test every active credential, print a table."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ai_core.models import Brand
from ai_providers.selectors import credentials_for_brand, provider_list
from ai_providers.services import credential_test_connection

COLUMNS = (
    f"{'BRAND':<20}  {'PROVIDER':<13}  {'CREDENTIAL':<24}  {'OK':<14}  {'LATENCY_MS':>10}  ERROR"
)


class Command(BaseCommand):
    help = (
        "Test the connection of every active provider credential (one authenticated "
        "models-list call each, as POST /ai/credentials/test_connection/ does; the outcome is "
        "stored on the credential and fed to its circuit breaker) and print a table: brand, "
        "provider, credential, ok, latency, error class. By default every active brand; "
        "--brand limits it to one. --all-providers also lists, per brand, the providers "
        "with no active credential as 'not configured' (not a failure). Exits non-zero when "
        "any test failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all-providers",
            action="store_true",
            help="Also list providers a brand has no active credential for ('not configured').",
        )
        parser.add_argument("--brand", help="Only this brand (slug); default: every active brand.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("brand"):
            brands = list(Brand.objects.filter(slug=options["brand"]))
            if not brands:
                raise CommandError(f"No brand '{options['brand']}'.")
        else:
            brands = list(Brand.objects.filter(is_active=True).order_by("slug"))
        providers = list(provider_list().filter(is_active=True))

        self.stdout.write(COLUMNS)
        tested = failed = unconfigured = 0
        failures: list[str] = []
        for brand in brands:
            credentials = list(credentials_for_brand(brand=brand).filter(is_active=True))
            for credential in credentials:
                result = credential_test_connection(credential=credential)
                tested += 1
                error = ""
                if not result.ok:
                    failed += 1
                    error = _error_text(result.error)
                    failures.append(f"{brand.slug}/{credential.provider.code}/{credential.name}")
                self._row(
                    brand.slug,
                    credential.provider.code,
                    credential.name,
                    "yes" if result.ok else "NO",
                    str(result.latency_ms),
                    error,
                    ok=result.ok,
                )
            if options["all_providers"]:
                configured = {c.provider.code for c in credentials}
                for provider in providers:
                    if provider.code not in configured:
                        unconfigured += 1
                        self._row(brand.slug, provider.code, "-", "not configured", "-", "")

        self.stdout.write(
            f"brands {len(brands)}  credentials tested {tested}  passed {tested - failed}  "
            f"failed {failed}"
            + (f"  not configured {unconfigured}" if options["all_providers"] else "")
        )
        if tested == 0:
            self.stdout.write(self.style.WARNING("No active credential to test."))
        if failed:
            raise CommandError(f"{failed} credential test(s) failed: {', '.join(failures)}.")

    def _row(
        self,
        brand: str,
        provider: str,
        name: str,
        ok_text: str,
        latency: str,
        error: str,
        *,
        ok: bool | None = None,
    ) -> None:
        style = {True: self.style.SUCCESS, False: self.style.ERROR, None: None}[ok]
        self.stdout.write(
            f"{brand[:20]:<20}  {provider:<13}  {name[:24]:<24}  {ok_text:<14}  "
            f"{latency:>10}  {error}".rstrip(),
            style,
        )
        self.stdout.flush()


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return "unknown error"
    text = str(error.get("error_class") or "error")
    if error.get("status_code"):
        text += f" ({error['status_code']})"
    return text
