"""The JSON parser of every endpoint: DRF's, made strict about what it lets through."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's ``JSONParser``, except that a body it would let through but nothing after it
    can handle is a 400 ``PARSE_ERROR`` before any view runs:

    - strings holding an unpaired surrogate (``"\\ud800"``): valid JSON escapes that no
      UTF-8 text can carry, so the job they were stored in could not be rendered, sent to
      a provider or even listed again (a 500 on every later read);
    - strings holding NUL (``"\\u0000"``), which PostgreSQL's text columns refuse;
    - nesting deep enough to exhaust Python's recursion limit (``RecursionError``).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        try:
            text = json.dumps(data, ensure_ascii=False)
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            character = exc.object[exc.start : exc.end]
            raise ParseError(
                "JSON parse error - a string holds an unpaired surrogate "
                f"(U+{ord(character[0]):04X}), which is not text."
            ) from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        # json.dumps writes NUL as the escape "\u0000": only then look at the strings.
        if "\\u0000" in text and _holds_nul(data):
            raise ParseError("JSON parse error - a string holds a NUL character (U+0000).")
        return data


def _holds_nul(data: Any) -> bool:
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
