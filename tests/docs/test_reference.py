"""docs/complete-reference.md is generated from the OpenAPI schema and matches it."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

from ai_core.management.commands.generate_api_reference import DEFAULT_OUTPUT, METHODS


def test_complete_reference_matches_the_current_schema():
    out = StringIO()
    call_command("generate_api_reference", "--check", stdout=out)
    assert "up to date" in out.getvalue()


def test_every_path_and_method_of_the_schema_is_documented():
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    text = DEFAULT_OUTPUT.read_text()
    for path, operations in schema["paths"].items():
        for method in operations:
            if method in METHODS:
                assert f"### `{method.upper()} {path}`" in text
    for name in schema["components"]["schemas"]:
        assert f"### {name}\n" in text


def test_check_fails_when_the_file_is_stale_and_generation_fixes_it(tmp_path):
    target = tmp_path / "reference.md"
    target.write_text("# hand-edited\n")
    with pytest.raises(CommandError) as failure:
        call_command("generate_api_reference", "--check", output=str(target), stderr=StringIO())
    assert failure.value.returncode == 1
    call_command("generate_api_reference", output=str(target), stdout=StringIO())
    call_command("generate_api_reference", "--check", output=str(target), stdout=StringIO())
    assert target.read_text() == DEFAULT_OUTPUT.read_text()


def test_the_schema_builds_without_warnings_and_names_both_authentications():
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache)
    assert set(schema["components"]["securitySchemes"]) == {"jwtAuth", "brandApiKey"}
    gateway = schema["paths"]["/ai/v1/chat/completions"]["post"]
    assert gateway["security"] == [{"brandApiKey": []}]
    assert schema["paths"]["/ai/jobs/"]["get"]["security"] == [{"jwtAuth": []}]
