"""Fuzz the API from its own OpenAPI document (schemathesis): no 5xx, answers as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from apikit import TOKENS, ApiKit
from tocsin.api.openapi import OPERATIONS

# Matchers and windows have rules no JSON schema states (valid RE2, one matcher that does
# not match the empty string, an end before the year 10000), and a request's input is checked
# against its catalog item's fields: valid-looking bodies may get 400.
SEMANTIC = {
    ("POST", "/api/v1/silences"),
    ("POST", "/api/v1/maintenance"),
    ("POST", "/api/v1/known-errors"),
    ("POST", "/api/v1/requests"),
}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiKit]:
    """One server for the whole module, with a few incidents to work on."""
    with ApiKit(Path(tmp_path_factory.mktemp("fuzz"))) as kit:
        for n in range(3):
            kit.open_incident(f"incident {n}")
        yield kit


@pytest.fixture(scope="module")
def api_schema(fuzzed: ApiKit) -> schemathesis.schemas.BaseSchema:
    """The document as the server serves it; a body over 64 KiB is refused with 413."""
    loaded = schemathesis.openapi.from_url(f"{fuzzed.url}/api/v1/openapi.json")
    rejection = loaded.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return loaded


# schemathesis.pytest.from_fixture fails under pytest 9 (it reads Function._nodeid), so each
# operation runs its own Hypothesis test here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), sorted(OPERATIONS))
def test_the_api_answers_generated_requests_as_documented(
    api_schema: schemathesis.schemas.BaseSchema,
    fuzzed: ApiKit,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """Test, with an operator token, that generated requests (valid ones, and invalid ones
    that must be refused) get no 5xx, and that status, content type and body are documented."""
    operation = api_schema[path][method]
    excluded = [positive_data_acceptance] if (method, path) in SEMANTIC else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=fuzzed.url,
            headers={"Authorization": f"Bearer {TOKENS['operator']}"},
            excluded_checks=excluded,
        )

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("no invalid request can be made: every input is free text, or none")
