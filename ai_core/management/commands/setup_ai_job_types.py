from django.core.management.base import BaseCommand, CommandParser

from ai_core.services.job_types import job_types_seed


class Command(BaseCommand):
    help = "Create or update the AI job categories and types. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--include-o3", action="store_true", help="Also the reasoning (o3) job types."
        )

    def handle(self, *args: object, **options: object) -> None:
        created, updated = job_types_seed(include_o3=bool(options["include_o3"]))
        self.stdout.write(f"job types: {created} created, {updated} updated")
