"""Fuzz the live server from its own OpenAPI document: no request may cause a 5xx.

schemathesis generates requests for every operation, both ones that fit
the schema (positive) and ones that break it (negative: wrong types,
missing fields); each must get a deliberate answer. Bounded and
derandomized, so the run is short and the same every time.

503 is allowed only for Backpressure or a stopped system, neither of which
happens here, so the check is strict: any 5xx fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from actorq.service.metrics import PrometheusObserver
from tests.served import AUTH, Served, served_system

POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
FUZZ_SETTINGS = settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_system(observer=PrometheusObserver(), max_payload_bytes=4096) as s:
        s.gate.set()  # "block" jobs must not pile up while fuzzing
        yield s


@pytest.fixture(scope="module")
def schema(served: Served) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{served.url}/openapi.json", headers=AUTH)
    loaded.config.update(base_url=served.url)
    return loaded


@pytest.mark.parametrize("mode", [POSITIVE, NEGATIVE])
def test_no_request_causes_a_server_error(
    schema: schemathesis.BaseSchema, served: Served, mode: schemathesis.GenerationMode
) -> None:
    """Every operation, fuzzed, answers below 500 (and the system keeps running)."""
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 10

    for operation in operations:
        if mode is NEGATIVE and not (operation.body or any(operation.iter_parameters())):
            continue  # nothing to break: no parameters, no body

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=served.url, headers=AUTH, timeout=10)
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert served.system.running
    assert served.system.failure is None
