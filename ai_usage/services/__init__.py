"""Writes of ai_usage: usage records and their rollups, feedback, alerts."""

from .alerts import usage_alert_acknowledge, usage_alert_raise
from .feedback import cost_efficiency, usage_feedback_submit
from .records import usage_record_create
from .rollups import rollups_from_raw, usage_rollups_rebuild

__all__ = [
    "cost_efficiency",
    "rollups_from_raw",
    "usage_alert_acknowledge",
    "usage_alert_raise",
    "usage_feedback_submit",
    "usage_record_create",
    "usage_rollups_rebuild",
]
