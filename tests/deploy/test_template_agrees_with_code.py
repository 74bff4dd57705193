"""template.yaml and the code agree: handlers, environment, key schemas, parameters, events."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from stori_pipeline.errors import ConfigurationError
from stori_pipeline.settings import (
    DEFAULT_NUM_WORKERS,
    EmailSettings,
    IngestSettings,
    ScaleOutSettings,
)
from tests.deploy.conftest import REPO, TEMPLATE

SETTINGS = {
    "ProcessUserTransactionFunction": IngestSettings,
    "SendUserEmailFunction": EmailSettings,
    "ProcessLargeTransactionFunction": ScaleOutSettings,
}
# Read by Powertools (service name, metrics namespace, log level), by the Python log level
# fallback, and by botocore (the local emulator's endpoint, only with LocalEndpointUrl set).
PLATFORM_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "LOG_LEVEL",
    "AWS_ENDPOINT_URL",
}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    merged = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(_functions(template)[function]["Environment"]["Variables"])
    return merged


def test_the_template_has_exactly_the_three_functions(template: dict[str, Any]) -> None:
    """The template deploys the ingest, the distributed workflow's steps and the email."""
    assert set(_functions(template)) == set(SETTINGS)


@pytest.mark.parametrize("function", sorted(SETTINGS))
def test_handler_path_names_a_handler_function(template: dict[str, Any], function: str) -> None:
    """Each Handler "<module>.<name>" is a file in CodeUri that defines <name>(event, context)."""
    properties = _functions(template)[function]
    module, _, name = properties["Handler"].rpartition(".")
    path = REPO / properties["CodeUri"] / f"{module}.py"
    assert path.is_file(), path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    handlers = [
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name
    ]
    assert handlers, f"{path} defines no {name}()"
    assert len(handlers[0].args.args) == 2, "a Lambda handler takes (event, context)"


@pytest.mark.parametrize("function", sorted(SETTINGS))
def test_every_required_variable_is_set(template: dict[str, Any], function: str) -> None:
    """Every variable the function's settings class requires is set on the function."""
    missing = set(SETTINGS[function].REQUIRED) - set(_environment(template, function))
    assert not missing


@pytest.mark.parametrize("function", sorted(SETTINGS))
def test_every_variable_set_is_read_by_something(template: dict[str, Any], function: str) -> None:
    """No variable on a function is a typo: its settings class or the platform reads each one."""
    settings = SETTINGS[function]
    known = set(settings.REQUIRED) | set(settings.OPTIONAL) | PLATFORM_VARIABLES
    assert set(_environment(template, function)) - known == set()


def test_num_workers_parameter_bounds_are_accepted_by_the_settings(
    template: dict[str, Any],
) -> None:
    """Every NumWorkers the template allows is valid for IngestSettings, and is passed through."""
    parameter = template["Parameters"]["NumWorkers"]
    base = {"TRANSACTIONS_TABLE": "t", "OBJECTS_TABLE": "o", "IDEMPOTENCY_TABLE": "i"}
    for value in (parameter["MinValue"], parameter["Default"], parameter["MaxValue"]):
        settings = IngestSettings.from_env({**base, "NUM_WORKERS": str(value)})
        assert settings.num_workers == value
    with pytest.raises(ConfigurationError):
        IngestSettings.from_env({**base, "NUM_WORKERS": str(parameter["MaxValue"] + 1)})
    env = _environment(template, "ProcessUserTransactionFunction")
    assert env["NUM_WORKERS"] == {"Ref": "NumWorkers"}


def _keys(template: dict[str, Any], table: str) -> list[tuple[str, str, str]]:
    properties = template["Resources"][table]["Properties"]
    types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
    return [
        (k["AttributeName"], k["KeyType"], types[k["AttributeName"]])
        for k in properties["KeySchema"]
    ]


def test_transactions_table_keys_are_spec_keys(template: dict[str, Any]) -> None:
    """Transactions: PK AccountId (S), SK TransactionKey (S), as SPEC §4 says the ingest writes."""
    assert _keys(template, "TransactionsTable") == [
        ("AccountId", "HASH", "S"),
        ("TransactionKey", "RANGE", "S"),
    ]


def test_users_table_key_is_account_id(template: dict[str, Any]) -> None:
    """Users: PK AccountId (S), the key the email function looks up and `users put` writes."""
    assert _keys(template, "UsersTable") == [("AccountId", "HASH", "S")]


def test_idempotency_table_matches_powertools_defaults(template: dict[str, Any]) -> None:
    """The idempotency table's key and TTL are the attributes Powertools' persistence layer uses."""
    layer = DynamoDBPersistenceLayer(table_name="any")
    assert _keys(template, "IdempotencyTable") == [(layer.key_attr, "HASH", "S")]
    assert layer.sort_key_attr is None
    ttl = template["Resources"]["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": layer.expiry_attr, "Enabled": True}


@pytest.mark.parametrize(
    "table", ["TransactionsTable", "ObjectsTable", "UsersTable", "IdempotencyTable"]
)
def test_tables_are_on_demand_recoverable_and_encrypted(
    template: dict[str, Any], table: str
) -> None:
    """Every table is on-demand, has point-in-time recovery and server-side encryption."""
    properties = template["Resources"][table]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_functions_run_python_313_on_arm64(template: dict[str, Any]) -> None:
    """Globals pin the runtime SPEC §8 names: Python 3.13 on arm64, with X-Ray tracing."""
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"


def test_no_resource_has_a_literal_global_name(template: dict[str, Any]) -> None:
    """Buckets, tables and queues are named by CloudFormation, so stacks never collide."""
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("BucketName", "TableName", "QueueName", "TopicName"):
            assert key not in properties, f"{name} sets a literal {key}"


@pytest.mark.parametrize(
    ("sample", "source", "detail_type"),
    [
        ("process-user-transaction.json", "aws.s3", "Object Created"),
        ("send-user-email.json", "stori.pipeline", "Transactions Summarized"),
    ],
)
def test_sample_events_are_eventbridge_envelopes(
    sample: str, source: str, detail_type: str
) -> None:
    """events/*.json are whole EventBridge events of the kind each function receives."""
    event = json.loads((REPO / "events" / sample).read_text(encoding="utf-8"))
    assert event["source"] == source
    assert event["detail-type"] == detail_type
    assert {"version", "id", "account", "time", "region", "resources", "detail"} <= set(event)


def test_summary_sample_carries_the_spec_example(template: dict[str, Any]) -> None:
    """The email sample's summary is SPEC §3's worked example (balance 39.74, two months)."""
    event = json.loads((REPO / "events" / "send-user-email.json").read_text(encoding="utf-8"))
    summary = event["detail"]["summary"]
    assert summary["balance"] == "39.74"
    assert [m["month"] for m in summary["months"]] == [7, 8]
    assert event["detail"]["schemaVersion"] == 1
    assert len(event["detail"]["importId"]) == 32


def test_env_local_names_only_declared_functions_and_variables(template: dict[str, Any]) -> None:
    """env.local.json overrides only variables the template declares (sam local ignores others)."""
    env_file = json.loads((REPO / "env.local.json").read_text(encoding="utf-8"))
    functions = set(SETTINGS)
    assert set(env_file) - {"Parameters"} <= functions
    for function in functions:
        declared = set(_environment(template, function))
        overrides = {**env_file.get("Parameters", {}), **env_file.get(function, {})}
        assert set(overrides) <= declared, function


def test_env_local_is_what_local_up_serves() -> None:
    """env.local.json names the resources `stori-pipeline local up` (port 5000) creates."""
    from stori_pipeline.local.demo import local_plan  # noqa: PLC0415 - the local extra
    from stori_pipeline.local.up import env_file_text  # noqa: PLC0415

    expected = env_file_text(local_plan(TEMPLATE), "http://127.0.0.1:5000")
    assert (REPO / "env.local.json").read_text(encoding="utf-8") == expected


def test_num_workers_default_is_the_code_default(template: dict[str, Any]) -> None:
    """The deployed default is the one the ingest benchmark chose (settings.py)."""
    assert template["Parameters"]["NumWorkers"]["Default"] == DEFAULT_NUM_WORKERS
