"""ai_usage's error codes and exceptions."""

from __future__ import annotations

from enum import StrEnum

from megahub.errors import Conflict, NotFound


class UsageErrorCode(StrEnum):
    USAGE_ALREADY_RECORDED = "USAGE_ALREADY_RECORDED"
    JOB_NOT_SCORABLE = "JOB_NOT_SCORABLE"
    ALERT_NOT_FOUND = "ALERT_NOT_FOUND"


class UsageAlreadyRecorded(Conflict):
    """A second usage record for the same job: a usage row is written exactly once."""

    error_code = UsageErrorCode.USAGE_ALREADY_RECORDED
    default_detail = "Usage has already been recorded for this job."


class JobNotScorable(Conflict):
    """Feedback on a job that has no usage record (not finished, or no provider call)."""

    error_code = UsageErrorCode.JOB_NOT_SCORABLE
    default_detail = (
        "Only a job with a recorded provider call can be scored (a completed job, or one "
        "cancelled after its call was made); retry once the job has completed."
    )


class AlertNotFound(NotFound):
    error_code = UsageErrorCode.ALERT_NOT_FOUND
    default_detail = "Alert not found."
