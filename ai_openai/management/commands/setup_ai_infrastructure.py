from django.core.management.base import BaseCommand, CommandParser

from ai_openai.setup import ai_infrastructure_setup


class Command(BaseCommand):
    help = (
        "Create or update providers, the model registry and job types. Idempotent: a second "
        "run changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--include-o3", action="store_true", help="Also the o3 reasoning models and job types."
        )

    def handle(self, *args: object, **options: object) -> None:
        report = ai_infrastructure_setup(include_o3=bool(options["include_o3"]))
        rows = [
            ("providers", report.providers),
            ("models", report.models),
            ("job categories", report.job_categories),
            ("job types", report.job_types),
        ]
        self.stdout.write(f"{'part':<16}{'created':>9}{'updated':>9}")
        for name, (created, updated) in rows:
            self.stdout.write(f"{name:<16}{created:>9}{updated:>9}")
        self.stdout.write("changed" if report.changed else "already up to date")
