"""The local stack's plan is read from the template, so local and cloud cannot drift apart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from stori_pipeline.local.demo import Roles, local_plan
from stori_pipeline.local.template import (
    DEFAULT_MAX_RECEIVE_COUNT,
    TemplateError,
    load_template,
    plan_stack,
)
from stori_pipeline.settings import EmailSettings, IngestSettings

FIXTURES = Path(__file__).resolve().parent.parent / "local" / "fixtures"
REAL_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture
def template() -> dict[str, Any]:
    """The fixture template, parsed."""
    return load_template(FIXTURES / "template.yaml")


def plan(template: dict[str, Any], **overrides: str) -> Any:
    """Plan the fixture template with a stack name of ``s``."""
    return plan_stack(
        template,
        template_dir=FIXTURES,
        stack_name="s",
        parameter_overrides={"SenderEmail": "a@example.com", **overrides},
    )


def test_short_tags_become_long_form(template: dict[str, Any]) -> None:
    """!Ref, !GetAtt and !Sub parse to CloudFormation's JSON form."""
    rule = template["Resources"]["UserTransactionToProcessRule"]["Properties"]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ProcessUserTransactionFunction", "Arn"]}
    assert rule["EventPattern"]["detail"]["bucket"]["name"] == [{"Ref": "TransactionsBucket"}]
    assert rule["Name"] == {"Fn::Sub": "${AWS::StackName}-user-transaction-to-process-transaction"}


def test_rule_resource_pattern_is_resolved_exactly(template: dict[str, Any]) -> None:
    """An AWS::Events::Rule keeps its pattern, with !Ref replaced by the local bucket name."""
    rules = {r.function: r for r in plan(template).rules}
    rule = rules["ProcessUserTransactionFunction"]
    assert rule.name == "s-user-transaction-to-process-transaction"
    assert rule.pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": ["s-transactionsbucket"]},
            "object": {"key": [{"prefix": "incoming/"}]},
        },
    }


def test_function_event_rule_is_planned(template: dict[str, Any]) -> None:
    """A function's Events of type EventBridgeRule becomes a rule targeting that function."""
    rules = {r.function: r for r in plan(template).rules}
    assert rules["SendUserEmailFunction"].pattern == {
        "source": ["stori.pipeline"],
        "detail-type": ["Transactions Summarized"],
    }


def test_a_changed_pattern_is_followed(template: dict[str, Any]) -> None:
    """Editing the template's pattern changes the local rule: nothing is copied by hand."""
    changed = copy.deepcopy(template)
    pattern = changed["Resources"]["UserTransactionToProcessRule"]["Properties"]["EventPattern"]
    pattern["detail"]["object"]["key"] = [{"prefix": "uploads/"}]
    changed["Resources"]["SendUserEmailFunction"]["Properties"]["Events"]["Summarized"][
        "Properties"
    ]["Pattern"]["detail-type"] = ["Something Else"]
    rules = {r.function: r for r in plan(changed).rules}
    assert rules["ProcessUserTransactionFunction"].pattern["detail"]["object"]["key"] == [
        {"prefix": "uploads/"}
    ]
    assert rules["SendUserEmailFunction"].pattern["detail-type"] == ["Something Else"]


def test_names_are_explicit_or_derived(template: dict[str, Any]) -> None:
    """An explicit TableName is resolved; otherwise the name is <stack>-<logicalid>."""
    names = {t.logical_id: t.name for t in plan(template).tables}
    assert names == {
        "TransactionsTable": "s-transactionstable",
        "ObjectsTable": "s-objectstable",
        "UsersTable": "s-users",
        "IdempotencyTable": "s-idempotencytable",
    }


def test_tables_keep_key_schema_and_ttl(template: dict[str, Any]) -> None:
    """Key schemas and the TTL attribute come from the template."""
    stack = plan(template)
    transactions = stack.table("TransactionsTable")
    assert transactions.key_schema == (
        {"AttributeName": "AccountId", "KeyType": "HASH"},
        {"AttributeName": "TransactionKey", "KeyType": "RANGE"},
    )
    assert stack.table("IdempotencyTable").ttl_attribute == "expiration"
    assert transactions.ttl_attribute is None


def test_function_env_merges_globals_and_resolves(template: dict[str, Any]) -> None:
    """Globals and function variables merge; !Ref, !Sub and !If resolve to local values."""
    ingest = plan(template, Stage="prod").function("ProcessUserTransactionFunction")
    assert ingest.environment["TRANSACTIONS_TABLE"] == "s-transactionstable"
    assert ingest.environment["IDEMPOTENCY_TABLE"] == "s-idempotencytable"
    assert ingest.environment["POWERTOOLS_METRICS_NAMESPACE"] == "stori-prod"
    assert ingest.environment["PROD"] == "yes"
    mailer = plan(template).function("SendUserEmailFunction")
    assert mailer.environment["SENDER_EMAIL"] == "a@example.com"
    assert mailer.environment["POWERTOOLS_SERVICE_NAME"] == "send-user-email"


def test_retry_budget_sets_max_receive_count(template: dict[str, Any]) -> None:
    """MaximumRetryAttempts N gives N+1 deliveries; without it Lambda's default of 3."""
    stack = plan(template)
    assert stack.function("ProcessUserTransactionFunction").max_receive_count == 2
    assert stack.function("SendUserEmailFunction").max_receive_count == DEFAULT_MAX_RECEIVE_COUNT


def test_handler_location_comes_from_code_uri(template: dict[str, Any]) -> None:
    """The handler module is imported from the CodeUri directory next to the template."""
    ingest = plan(template).function("ProcessUserTransactionFunction")
    assert ingest.code_dir == FIXTURES / "stub_handlers"
    assert (ingest.module, ingest.attribute) == ("stub_ingest", "handler")


def test_parameter_without_default_needs_a_value(template: dict[str, Any]) -> None:
    """A parameter with no default and no local value is an error, not a silent blank."""
    with pytest.raises(TemplateError, match="SenderEmail"):
        plan_stack(template, template_dir=FIXTURES)


def test_unknown_reference_is_an_error(template: dict[str, Any]) -> None:
    """A !Ref to a name the template does not declare is reported."""
    broken = copy.deepcopy(template)
    broken["Resources"]["SendUserEmailFunction"]["Properties"]["Environment"]["Variables"][
        "USERS_TABLE"
    ] = {"Ref": "NoSuchTable"}
    with pytest.raises(TemplateError, match="NoSuchTable"):
        plan(broken)


@pytest.mark.skipif(not REAL_TEMPLATE.is_file(), reason="template.yaml not merged yet")
def test_real_template_plans_a_complete_stack() -> None:
    """The project's template gives both functions every variable their settings require."""
    stack = local_plan(REAL_TEMPLATE, "s")
    roles = Roles.of(stack)
    IngestSettings.from_env(stack.function(roles.ingest).environment)
    EmailSettings.from_env(stack.function(roles.email).environment)
    assert {r.function for r in stack.rules} == {roles.ingest, roles.email}
    for function in stack.functions:
        assert (function.code_dir / f"{function.module.replace('.', '/')}.py").is_file()


# --- --parameter-overrides -------------------------------------------------------------------


def test_parameter_overrides_change_the_real_stack() -> None:
    """NumWorkers and LogLevel given as sam deploy takes them reach the functions' env."""
    default = local_plan(REAL_TEMPLATE)
    changed = local_plan(
        REAL_TEMPLATE,
        parameter_overrides=["NumWorkers=3", "ParameterKey=LogLevel,ParameterValue=DEBUG"],
    )
    ingest = changed.function_named(IngestSettings.REQUIRED[0])
    assert default.function_named(IngestSettings.REQUIRED[0]).environment["NUM_WORKERS"] == "16"
    assert ingest.environment["NUM_WORKERS"] == "3"
    assert IngestSettings.from_env(ingest.environment).num_workers == 3
    assert {f.environment["POWERTOOLS_LOG_LEVEL"] for f in changed.functions} == {"DEBUG"}
    assert changed.parameters["NumWorkers"] == "3"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("NumWorker=3", "unknown parameter 'NumWorker'"),
        ("NumWorkers", "is not Key=Value"),
        ("=3", "is not Key=Value"),
        ("LogLevel=TRACE", "is not one of"),
        ("NumWorkers=0", "is outside 1..64"),
        ("NumWorkers=many", "is not a number"),
        ("SenderEmail=not-an-address", "must be an email address"),
    ],
)
def test_bad_parameter_overrides_are_refused(item: str, message: str) -> None:
    """An override the template would refuse is refused locally, saying why."""
    with pytest.raises(TemplateError, match=message):
        local_plan(REAL_TEMPLATE, parameter_overrides=[item])


def test_unknown_parameter_lists_the_declared_ones() -> None:
    """The error names every parameter the template declares, so a typo is easy to fix."""
    with pytest.raises(TemplateError) as caught:
        local_plan(REAL_TEMPLATE, parameter_overrides=["Stag=prod"])
    for name in ("Stage", "LogLevel", "NumWorkers", "SenderEmail"):
        assert name in str(caught.value)


def test_timeout_given_by_a_parameter_is_resolved(template: dict[str, Any]) -> None:
    """A function Timeout that refers to a parameter is the parameter's value."""
    changed = copy.deepcopy(template)
    changed["Parameters"]["IngestTimeout"] = {"Type": "Number", "Default": 7}
    function = changed["Resources"]["ProcessUserTransactionFunction"]["Properties"]
    function["Timeout"] = {"Ref": "IngestTimeout"}
    assert plan(changed).function("ProcessUserTransactionFunction").timeout_seconds == 7
    overridden = plan(changed, IngestTimeout="2")
    assert overridden.function("ProcessUserTransactionFunction").timeout_seconds == 2
