from django.core.management.base import BaseCommand

from ai_core.services.jobs import ai_jobs_sweep


class Command(BaseCommand):
    help = (
        "Dispatch committed jobs that never reached the broker, and recover jobs stuck in "
        "'running' past their time limit. Also runs every 30 s under celery beat."
    )

    def handle(self, *args: object, **options: object) -> None:
        report = ai_jobs_sweep()
        self.stdout.write(
            f"redispatched {report.redispatched}  recovered {report.recovered}  "
            f"failed {report.failed}"
        )
