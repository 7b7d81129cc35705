from celery import shared_task

from .budgets import budget_reservations_sweep


@shared_task(
    name="ai_providers.tasks.sweep_budget_reservations",
    soft_time_limit=60,
    time_limit=90,
    ignore_result=True,
)
def sweep_budget_reservations() -> None:
    budget_reservations_sweep()
