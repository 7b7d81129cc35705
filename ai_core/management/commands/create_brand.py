from django.core.management.base import BaseCommand, CommandError, CommandParser

from ai_core.models import BrandMembership
from ai_core.services import BrandSetupResult, brand_setup_with_user
from megahub.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Create a brand (if new), a user (if new) and the user's membership in the brand. "
        "Idempotent: running it again changes nothing unless a value differs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Brand slug, e.g. 'acme' (not all digits).")
        parser.add_argument("--name", required=True, help="Brand display name.")
        parser.add_argument("--user", required=True, dest="username", help="Username.")
        parser.add_argument("--password", help="Password for a new user (or to reset it).")
        parser.add_argument(
            "--role",
            choices=BrandMembership.Role.values,
            default=BrandMembership.Role.MEMBER,
            help="Role in the brand (default: member).",
        )

    def handle(self, *args: object, **options: str) -> None:
        try:
            result = brand_setup_with_user(
                slug=options["slug"],
                name=options["name"],
                username=options["username"],
                password=options.get("password"),
                role=options["role"],
            )
        except ApplicationError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.field_errors.items())
            raise CommandError(f"{exc.detail} {details}".strip()) from exc

        self.stdout.write(
            f"brand       {result.brand.slug} (id {result.brand.pk}): {_brand(result)}"
        )
        self.stdout.write(
            f"user        {result.user.get_username()}: "
            f"{'created' if result.user_created else 'exists'}"
            + (", password reset" if result.password_changed else "")
        )
        self.stdout.write(f"membership  role {result.membership.role}: {_membership(result)}")


def _brand(result: BrandSetupResult) -> str:
    if result.brand_created:
        return "created"
    if result.brand_renamed_from is not None:
        return f"exists, renamed from {result.brand_renamed_from!r} to {result.brand.name!r}"
    return "exists"


def _membership(result: BrandSetupResult) -> str:
    if result.membership_created:
        return "created"
    if result.membership_role_was is not None:
        return f"updated (was {result.membership_role_was})"
    return "unchanged"
