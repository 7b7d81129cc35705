from typing import Any

from rest_framework.pagination import PageNumberPagination

from .errors import ValidationFailed


class StandardPagination(PageNumberPagination):
    """``count``, ``next``, ``previous``, ``results``; ``?page_size=`` up to 500 (more is
    read as 500).

    ``?page=`` and ``?page_size=`` must be whole numbers of at least 1 (``page`` may also
    be ``last``): anything else is 400 ``VALIDATION_ERROR`` naming the parameter, not
    DRF's 404 "Invalid page." for a typo, nor a silent first page of the default size. A
    page past the end stays a 404, as in DRF."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        field_errors = {
            name: [f"Expected a whole number of at least 1, got {value!r}."]
            for name in (self.page_query_param, self.page_size_query_param)
            if (value := request.query_params.get(name)) is not None
            and not (name == self.page_query_param and value in self.last_page_strings)
            and not _positive_int(value)
        }
        if field_errors:
            raise ValidationFailed(
                f"Invalid {' and '.join(field_errors)}.", field_errors=field_errors
            )
        return super().paginate_queryset(queryset, request, view)


def _positive_int(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) >= 1
