"""Write docs/complete-reference.md from the OpenAPI schema, so the reference cannot drift.

``--check`` writes nothing and exits 1 when the file differs from what would be generated
(the test suite runs it). The output depends only on the schema: no dates, no hosts.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

DEFAULT_OUTPUT = Path(settings.BASE_DIR) / "docs" / "complete-reference.md"
METHODS = ("get", "post", "put", "patch", "delete")
HEADER = """\
<!-- GENERATED FILE: do not edit. Regenerate with `python manage.py generate_api_reference`;
     `python manage.py generate_api_reference --check` (run by the tests) fails when stale. -->
"""


class Command(BaseCommand):
    # Documentation needs no encryption key or database: skip the system checks.
    requires_system_checks: list[str] = []
    help = (
        "Generate docs/complete-reference.md (every path, method, parameter, request and "
        "response schema) from the OpenAPI schema. --check: exit 1 if the file is stale."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; exit 1 when the file differs from what would be generated.",
        )
        parser.add_argument(
            "--output", default=str(DEFAULT_OUTPUT), help="File to write (or check)."
        )

    def handle(self, *args: Any, check: bool, output: str, **options: Any) -> None:
        with GENERATOR_STATS.silence():
            schema = SchemaGenerator().get_schema(request=None, public=True)
        text = render_reference(schema)
        path = Path(output)
        if check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                diff = difflib.unified_diff(
                    current.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
                )
                self.stderr.write("\n".join(list(diff)[:60]))
                raise CommandError(
                    f"{path} is out of date: run `python manage.py generate_api_reference`.",
                    returncode=1,
                )
            self.stdout.write(f"{path} is up to date ({count_operations(schema)} operations).")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        state = "written" if changed else "unchanged"
        self.stdout.write(f"{path} {state}: {count_operations(schema)} operations.")


def count_operations(schema: dict[str, Any]) -> int:
    return sum(1 for ops in schema["paths"].values() for m in ops if m in METHODS)


def section_of(path: str) -> str:
    """``/ai/openai/chat/`` → ``/ai/openai``; ``/ai/jobs/{id}/`` → ``/ai/jobs``."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts[:2])


def anchor(name: str) -> str:
    return "schema-" + name.lower()


def cell(text: Any) -> str:
    """One markdown table cell: a single line, pipes escaped."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def type_of(schema: dict[str, Any] | None) -> str:
    """A short human form of a JSON schema, linking components."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor(name)})"
    for combinator, joiner in (("allOf", " & "), ("oneOf", " | "), ("anyOf", " | ")):
        if combinator in schema:
            parts = [type_of(s) for s in schema[combinator]]
            return joiner.join(p for p in parts if p != "any") or "any"
    kind = schema.get("type", "object" if "properties" in schema else "any")
    if kind == "array":
        text = f"array of {type_of(schema.get('items'))}"
    elif "enum" in schema:
        text = "one of " + ", ".join(f"`{v}`" for v in schema["enum"] if v not in ("", None))
    else:
        text = str(kind)
        # Integer widths depend on the database backend's field ranges: not shown, so the
        # reference is the same whatever database generated it.
        if "format" in schema and kind != "integer":
            text += f" ({schema['format']})"
    if schema.get("nullable"):
        text += ", nullable"
    return text


def first_paragraph(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0]


def render_operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if description := first_paragraph(op.get("description") or op.get("summary")):
        lines += [" ".join(description.split()), ""]
    lines += [f"Operation `{op['operationId']}`", ""]
    params = op.get("parameters") or []
    if params:
        lines += [
            "| parameter | in | type | required | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for param in params:
            lines.append(
                f"| `{param['name']}` | {param['in']} | {cell(type_of(param.get('schema')))} | "
                f"{'yes' if param.get('required') else 'no'} | "
                f"{cell(first_paragraph(param.get('description')))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        content = body.get("content", {})
        schemas = {type_of(c.get("schema")) for c in content.values()}
        required = "required" if body.get("required") else "optional"
        lines.append(
            f"Request body ({required}; {', '.join(f'`{t}`' for t in content)}): "
            + ", ".join(sorted(schemas))
        )
        lines.append("")
    lines += ["| status | response |", "| --- | --- |"]
    for status, response in op.get("responses", {}).items():
        content = response.get("content") or {}
        if content:
            shown = ", ".join(
                f"{type_of(c.get('schema'))} (`{ctype}`)" for ctype, c in content.items()
            )
        else:
            shown = cell(response.get("description")) or "no body"
        lines.append(f"| {status} | {cell(shown)} |")
    lines.append("")
    return lines


def render_component(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f'<a id="{anchor(name)}"></a>', f"### {name}", ""]
    if description := first_paragraph(schema.get("description")):
        lines += [" ".join(description.split()), ""]
    if "enum" in schema:
        values = ", ".join(f"`{v}`" for v in schema["enum"] if v not in ("", None))
        lines += [f"Enum ({schema.get('type', 'string')}): {values}", ""]
        return lines
    properties = schema.get("properties")
    if not properties:
        lines += [f"Type: {type_of(schema)}", ""]
        return lines
    required = set(schema.get("required", []))
    lines += [
        "| field | type | required | read-only | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for field, spec in properties.items():
        flags = "yes" if field in required else "no"
        read_only = (
            "yes" if spec.get("readOnly") else ("write-only" if spec.get("writeOnly") else "")
        )
        lines.append(
            f"| `{field}` | {cell(type_of(spec))} | {flags} | {read_only} | "
            f"{cell(first_paragraph(spec.get('description')))} |"
        )
    lines.append("")
    return lines


def render_reference(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    by_section: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            if method in METHODS:
                by_section[section_of(path)].append((method, path, op))
    lines = [
        HEADER,
        f"# {info.get('title', 'API')} — complete reference",
        "",
        f"API version {info.get('version', '')}. {count_operations(schema)} operations. "
        "`/api/auth/` needs no token; the OpenAI-compatible gateway `/ai/v1/` takes a "
        "brand API key (`Authorization: Bearer <key>`, created at `/ai/api-keys/`); every "
        "other `/ai/` call needs `Authorization: Bearer <access>` and, unless the user "
        "belongs to exactly one brand, `X-Brand-ID`. Errors have the shape "
        "`{detail, error_code, field_errors, suggestions}` (see [core.md](core.md)). "
        "The machine-readable schema is served at `/api/schema/` and browsable at "
        "`/api/docs/`. Outside the schema: `GET /health` (liveness) and `GET /metrics` "
        "(Prometheus, see [observability.md](observability.md#prometheus-metrics)).",
        "",
        "## Index",
        "",
        "| method | path | operation |",
        "| --- | --- | --- |",
    ]
    for section in sorted(by_section):
        for method, path, op in by_section[section]:
            lines.append(f"| {method.upper()} | `{path}` | `{op['operationId']}` |")
    lines.append("")
    for section in sorted(by_section):
        lines += [f"## `{section}`", ""]
        for method, path, op in by_section[section]:
            lines += render_operation(method, path, op)
    components = schema.get("components", {}).get("schemas", {})
    if components:
        lines += ["## Schemas", ""]
        for name in sorted(components):
            lines += render_component(name, components[name])
    return "\n".join(lines).rstrip() + "\n"
