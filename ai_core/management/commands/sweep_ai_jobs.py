from django.core.management.base import BaseCommand

from ai_core.services.jobs import ai_jobs_sweep


class Command(BaseCommand):
    help = (
        "Dispatch committed jobs that never reached the broker, recover jobs stuck in "
        "'running' past their time limit, and release the reservations of jobs that ended "
        "without settling them. Also runs every 30 s under celery beat."
    )

    def handle(self, *args: object, **options: object) -> None:
        from ai_providers.budgets import budget_reservations_sweep

        report = ai_jobs_sweep()
        # What celery beat's budget task does too: without beat, this command is the cron.
        released = budget_reservations_sweep()
        self.stdout.write(
            f"redispatched {report.redispatched}  recovered {report.recovered}  "
            f"failed {report.failed}  released {released}"
        )
