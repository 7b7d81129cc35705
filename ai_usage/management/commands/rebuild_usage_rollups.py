from django.core.management.base import BaseCommand, CommandError

from ai_core.models import Brand
from ai_usage.services import usage_rollups_rebuild


class Command(BaseCommand):
    help = "Recompute the daily usage rollups from the raw usage records (one brand or all)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--brand", help="Brand slug; every brand when omitted.")

    def handle(self, *args: object, **options: object) -> None:
        brand = None
        if options["brand"]:
            brand = Brand.objects.filter(slug=options["brand"]).first()
            if brand is None:
                raise CommandError(f"No brand with slug {options['brand']!r}.")
        count = usage_rollups_rebuild(brand=brand)
        scope = brand.slug if brand else "all brands"
        self.stdout.write(f"rebuilt {count} rollup rows for {scope}")
