"""Page-number pagination that names its list after the resource (`{"sites": [...]}`)."""

from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class EnvelopePagination(PageNumberPagination):
    envelope_key = "results"
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_paginated_response(self, data):
        return Response(
            {
                self.envelope_key: data,
                "count": self.page.paginator.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
            }
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", self.envelope_key],
            "properties": {
                self.envelope_key: schema,
                "count": {"type": "integer"},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
            },
        }


def envelope(key: str) -> type[EnvelopePagination]:
    """A pagination class whose list is named `key`, as the contract's `{"sites": [...]}`."""
    return type(
        f"{key.title().replace('_', '')}Pagination", (EnvelopePagination,), {"envelope_key": key}
    )
