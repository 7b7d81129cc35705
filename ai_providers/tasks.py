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


@shared_task(
    name="ai_providers.tasks.deliver_job_webhook",
    soft_time_limit=60,
    time_limit=90,
    ignore_result=True,
)
def deliver_job_webhook(
    job_id: int, event: str, delivery: str, attempt: int = 0, trace_id: str | None = None
) -> None:
    """One attempt of a job webhook delivery; a failed one schedules the next after
    ``AI_WEBHOOK_RETRY_DELAYS[attempt]`` (ai_providers.webhooks)."""
    from django.conf import settings

    from megahub.tracing import trace_context

    from .webhooks import job_webhook_attempt

    with trace_context(trace_id):
        if job_webhook_attempt(job_id, event, delivery, attempt):
            return
    deliver_job_webhook.apply_async(
        args=[job_id, event, delivery, attempt + 1],
        kwargs={"trace_id": trace_id},
        countdown=settings.AI_WEBHOOK_RETRY_DELAYS[attempt],
    )
