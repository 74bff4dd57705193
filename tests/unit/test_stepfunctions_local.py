"""The pure parts of the local Step Functions bridge: substitutions, names, thresholds, replies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stori_pipeline.errors import ConfigurationError
from stori_pipeline.local.stepfunctions import (
    FunctionFailure,
    LambdaServiceError,
    _BridgedLambdaClient,
    _exceeds_tolerance,
    execution_arn_for,
    function_name_of,
    substitute_definition,
)


def test_substitutions_replace_every_placeholder_as_text() -> None:
    """Strings, numbers and booleans land as text; an unquoted placeholder can be a number."""
    definition = '{"F": "${Fn}", "M": ${Max}, "P": ${Pct}, "B": ${Flag}, "again": "${Fn}"}'

    body = substitute_definition(definition, {"Fn": "arn:f", "Max": 8, "Pct": 2.5, "Flag": True})

    assert json.loads(body) == {"F": "arn:f", "M": 8, "P": 2.5, "B": True, "again": "arn:f"}


def test_a_placeholder_without_a_value_is_reported_with_all_the_others() -> None:
    """Every missing name at once, so one fix round is enough."""
    with pytest.raises(ConfigurationError) as raised:
        substitute_definition('{"a": "${One}", "b": "${Two}", "c": "${Known}"}', {"Known": "k"})

    assert raised.value.problems == (
        "no DefinitionSubstitutions value for ${One}",
        "no DefinitionSubstitutions value for ${Two}",
    )


def test_text_without_placeholders_is_unchanged() -> None:
    """States.Format's {} and a JSONPath $ are not placeholders."""
    definition = '{"m.$": "States.Format(\'{} of {}\', $.a, $$.Map.Item.Index)"}'

    assert substitute_definition(definition) == definition


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("work", "work"),
        ("work:live", "work"),
        ("arn:aws:lambda:us-east-1:123456789012:function:work", "work"),
        ("arn:aws:lambda:us-east-1:123456789012:function:work:7", "work"),
        ("123456789012:function:work", "work"),
    ],
)
def test_function_names_come_from_names_and_arns(given: str, name: str) -> None:
    """Every form Lambda's FunctionName accepts names the same function."""
    assert function_name_of(given) == name


@pytest.mark.parametrize(
    ("failed", "items", "count", "percentage", "exceeded"),
    [
        (0, 10, 0, 0.0, False),  # nothing failed
        (1, 10, 0, 0.0, True),  # the default tolerates nothing
        (2, 10, 2, 0.0, False),  # count: at most 2
        (3, 10, 2, 0.0, True),
        (2, 10, 0, 20.0, False),  # percentage: at most 20 %
        (3, 10, 0, 20.0, True),
        (3, 10, 5, 20.0, True),  # either threshold exceeded fails the run
        (5, 100, 4, 10.0, True),
    ],
)
def test_the_map_run_failure_threshold(
    failed: int, items: int, count: int, percentage: float, exceeded: bool
) -> None:
    """AWS's rule for ToleratedFailureCount / ToleratedFailurePercentage."""
    assert _exceeds_tolerance(failed, items, count, percentage) is exceeded


def test_the_execution_arn_follows_the_state_machine_arn() -> None:
    """What Step Functions names an execution, known without asking it."""
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:ingest"

    assert execution_arn_for(machine, "imp-1") == (
        "arn:aws:states:us-east-1:123456789012:execution:ingest:imp-1"
    )


def invoke_through(invoke: Any, payload: Any = None) -> dict[str, Any]:
    """Call the stand-in Lambda client as moto's interpreter does; read the payload back."""
    raw = None if payload is None else json.dumps(payload).encode()
    response = _BridgedLambdaClient(invoke).invoke(FunctionName="arn:x:function:f", Payload=raw)
    response["Payload"] = json.loads(response["Payload"].read())
    return response


def test_a_result_is_the_payload_of_a_successful_invocation() -> None:
    """The invoker gets the function's name and the decoded payload; no payload is {}."""
    seen: list[tuple[str, Any]] = []

    def invoke(name: str, payload: Any) -> Any:
        seen.append((name, payload))
        return {"ok": payload}

    assert invoke_through(invoke, [1, "a"])["Payload"] == {"ok": [1, "a"]}
    assert "FunctionError" not in invoke_through(invoke)
    assert seen == [("f", [1, "a"]), ("f", {})]


def test_an_exception_is_an_unhandled_function_error_named_by_its_type() -> None:
    """As Lambda's Python runtime reports it: errorType, errorMessage, stackTrace."""

    def invoke(name: str, payload: Any) -> Any:
        raise KeyError(name)

    response = invoke_through(invoke)

    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "KeyError"
    assert response["Payload"]["errorMessage"] == "'f'"
    assert any("raise KeyError" in line for line in response["Payload"]["stackTrace"])


def test_a_returned_failure_is_a_function_error_too() -> None:
    """A failure that crossed a process boundary as data, with its own type name."""
    response = invoke_through(lambda _name, _payload: FunctionFailure("RangeError", "bad range"))

    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"]["errorType"] == "RangeError"
    assert response["Payload"]["errorMessage"] == "bad range"


def test_a_result_json_cannot_hold_is_a_marshal_error() -> None:
    """Lambda's own error for a result it cannot serialize."""
    response = invoke_through(lambda _name, _payload: {1, 2})

    assert response["Payload"]["errorType"] == "Runtime.MarshalError"


def test_a_service_error_is_a_client_error_with_its_code() -> None:
    """The interpreter names it Lambda.<code>, so Retry on Lambda.ServiceException matches."""

    def invoke(name: str, payload: Any) -> Any:
        raise LambdaServiceError("TooManyRequestsException", "Rate exceeded", status=429)

    with pytest.raises(ClientError) as raised:
        invoke_through(invoke)

    assert raised.value.response["Error"] == {
        "Code": "TooManyRequestsException",
        "Message": "Rate exceeded",
    }
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
