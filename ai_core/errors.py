"""ai_core's error codes and exceptions (brands, jobs)."""

from __future__ import annotations

from enum import StrEnum

from megahub.errors import ApplicationError, Conflict, NotFound


class CoreErrorCode(StrEnum):
    BRAND_REQUIRED = "BRAND_REQUIRED"
    BRAND_FORBIDDEN = "BRAND_FORBIDDEN"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    JOB_TYPE_NOT_FOUND = "JOB_TYPE_NOT_FOUND"
    JOB_NOT_CANCELLABLE = "JOB_NOT_CANCELLABLE"
    INVALID_TRANSITION = "INVALID_TRANSITION"


class BrandRequired(ApplicationError):
    status_code = 400
    error_code = CoreErrorCode.BRAND_REQUIRED
    default_detail = "Select a brand with the X-Brand-ID header (id or slug)."


class BrandForbidden(ApplicationError):
    """Same answer for an unknown brand and a brand the user is not a member of."""

    status_code = 403
    error_code = CoreErrorCode.BRAND_FORBIDDEN
    default_detail = "You do not have access to this brand."


class JobNotFound(NotFound):
    error_code = CoreErrorCode.JOB_NOT_FOUND
    default_detail = "Job not found."


class JobTypeNotFound(ApplicationError):
    status_code = 400
    error_code = CoreErrorCode.JOB_TYPE_NOT_FOUND
    default_detail = "Unknown job type."


class JobNotCancellable(Conflict):
    error_code = CoreErrorCode.JOB_NOT_CANCELLABLE
    default_detail = "The job has already finished and cannot be cancelled."


class InvalidTransition(Conflict):
    error_code = CoreErrorCode.INVALID_TRANSITION
    default_detail = "Illegal job status transition."
