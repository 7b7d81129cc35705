from django.core.management.base import BaseCommand, CommandParser

from ai_core.services.job_types import job_types_seed


class Command(BaseCommand):
    help = "Create or update the AI job categories and types. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--include-o3", action="store_true", help="Also the reasoning (o3) job types."
        )

    def handle(self, *args: object, **options: object) -> None:
        result = job_types_seed(include_o3=bool(options["include_o3"]))
        rows = [("job categories", result.categories), ("job types", result.job_types)]
        self.stdout.write(f"{'part':<16}{'created':>9}{'updated':>9}")
        for name, (created, updated) in rows:
            self.stdout.write(f"{name:<16}{created:>9}{updated:>9}")
        self.stdout.write("changed" if result.changed else "already up to date")
