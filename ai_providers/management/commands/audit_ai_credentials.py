from django.core.management.base import BaseCommand, CommandError, CommandParser

from ai_providers.crypto import mask_api_key, webhook_secrets_audit
from ai_providers.services import unscoped_credentials_audit


class Command(BaseCommand):
    help = (
        "List every provider credential with its masked key, key age and whether its "
        "ciphertext is under the newest AI_ENCRYPTION_KEY; flag keys set more than 90 days "
        "ago (EXPIRED). --rotate-expired re-encrypts every credential not under the newest "
        "key (and the brands' webhook secrets likewise). Exits non-zero when a credential "
        "or a webhook secret cannot be decrypted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rotate-expired",
            action="store_true",
            help="Re-encrypt every credential not under the newest AI_ENCRYPTION_KEY.",
        )

    def handle(self, *args: object, **options: object) -> None:
        rotate = bool(options["rotate_expired"])
        rows = unscoped_credentials_audit(rotate_encryption=rotate)
        header = (
            f"{'ID':>6}  {'BRAND':<20}  {'PROVIDER':<13}  {'NAME':<24}  {'KEY':<12}  "
            f"{'AGE_DAYS':>8}  {'NEWEST_KEY':<10}  FLAGS"
        )
        self.stdout.write(header)
        for row in rows:
            credential = row.credential
            newest = {True: "yes", False: "no", None: "?"}[row.under_newest_key]
            flags = []
            if row.expired:
                flags.append("EXPIRED")
            if row.rotated:
                flags.append("ROTATED")
            if row.decrypt_error is not None:
                flags.append("DECRYPT_FAILED")
            self.stdout.write(
                f"{credential.pk:>6}  {credential.brand.slug[:20]:<20}  "
                f"{credential.provider.code:<13}  {credential.name[:24]:<24}  "
                f"{mask_api_key(credential.key_last4):<12}  {row.key_age_days:>8}  "
                f"{newest:<10}  {' '.join(flags)}"
            )
        failed = [row for row in rows if row.decrypt_error is not None]
        self.stdout.write(
            f"credentials {len(rows)}  expired {sum(r.expired for r in rows)}  "
            f"not under newest key {sum(r.under_newest_key is False for r in rows)}  "
            f"rotated {sum(r.rotated for r in rows)}  failed {len(failed)}"
        )
        secrets = webhook_secrets_audit(rotate=rotate)
        self.stdout.write(
            f"webhook secrets {secrets.total}  not under newest key {secrets.stale}  "
            f"rotated {secrets.rotated}  failed {len(secrets.failed)}"
        )
        problems = []
        if failed:
            for row in failed:
                credential = row.credential
                self.stderr.write(
                    f"credential {credential.pk} ({credential.brand.slug}/"
                    f"{credential.provider.code}/{credential.name}): {row.decrypt_error}"
                )
            problems.append(
                f"{len(failed)} credential(s) cannot be decrypted with AI_ENCRYPTION_KEY: "
                f"{', '.join(str(r.credential.pk) for r in failed)}. Set their API keys again."
            )
        if secrets.failed:
            problems.append(
                "the webhook secret of brand(s) "
                f"{', '.join(secrets.failed)} cannot be decrypted with AI_ENCRYPTION_KEY. "
                "Set it again (PATCH /ai/quotas/ webhook_secret)."
            )
        if problems:
            raise CommandError(" ".join(problems))
