from django.core.management.base import BaseCommand, CommandError, CommandParser

from ai_core.models import Brand
from ai_providers.budgets import monthly_quotas_reset


class Command(BaseCommand):
    help = (
        "Reset this month's token quotas (spend back to zero; reservations in flight are "
        "kept). Daily budgets roll over by UTC date on their own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--brand", help="Only this brand (slug); default: every brand.")

    def handle(self, *args: object, **options: object) -> None:
        brand = None
        if options.get("brand"):
            brand = Brand.objects.filter(slug=options["brand"]).first()
            if brand is None:
                raise CommandError(f"No brand '{options['brand']}'.")
        count = monthly_quotas_reset(brand=brand)
        self.stdout.write(f"monthly quota counters reset: {count}")
