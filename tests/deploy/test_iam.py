"""Least privilege: no IAM statement allows a wildcard action or every resource.

The policies checked are the ones CloudFormation receives: the SAM transform's output (policy
templates expanded, the roles SAM generates, OnFailure destination grants), produced offline
by the SAM CLI's own translator in its isolated environment (deploy/sam_transform.py).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import REPO, TEMPLATE, sam_env

# Actions AWS cannot scope to a resource, so "*" is the only possible Resource.
UNSCOPED_ACTIONS = {
    # X-Ray has no resource-level permissions (Tracing: Active).
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray has no resource-level permissions",
    "xray:GetSamplingTargets": "X-Ray has no resource-level permissions",
    "xray:GetSamplingStatisticSummaries": "X-Ray has no resource-level permissions",
    "cloudwatch:PutMetricData": "metrics are namespaced by a condition, not by resource",
}
# AWS managed policies SAM attaches to every function role it generates. Their documents live
# in IAM, not in the template; each is accepted here for the reason given.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": (
        "logs:CreateLogGroup/CreateLogStream/PutLogEvents: the function's own logs"
    ),
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": "X-Ray writes (Tracing: Active), unscoped",
}


@pytest.fixture(scope="module")
def transformed(sam_bin: Path) -> dict[str, Any]:
    """The CloudFormation template the SAM transform produces from template.yaml."""
    done = subprocess.run(
        [
            str(sam_bin / "python"),
            str(REPO / "deploy" / "sam_transform.py"),
            str(TEMPLATE),
            json.dumps({"SenderEmail": "summaries@example.com"}),
        ],
        capture_output=True,
        text=True,
        env=sam_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) for every statement of every role, policy and resource policy."""
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        documents: list[tuple[str, Any]] = []
        if resource["Type"] == "AWS::IAM::Role":
            documents += [
                (f"{name}/{p['PolicyName']}", p["PolicyDocument"])
                for p in properties.get("Policies", [])
            ]
        if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents.append((name, properties["PolicyDocument"]))
        if resource["Type"] in {"AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy"}:
            documents.append((name, properties["PolicyDocument"]))
        for where, document in documents:
            for statement in _as_list(document["Statement"]):
                yield where, statement


def violations(template: dict[str, Any]) -> list[str]:
    """Every Allow statement with a wildcard action or an unscoped resource, as text."""
    found = []
    for where, statement in policy_statements(template):
        if statement["Effect"] != "Allow":
            continue  # a Deny may be as broad as it likes (e.g. DenyInsecureTransport on s3:*)
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        if "NotAction" in statement or "NotResource" in statement:
            found.append(f"{where}: NotAction/NotResource grants by exclusion")
        found += [f"{where}: wildcard action {a}" for a in actions if "*" in a]
        resources = _as_list(statement.get("Resource", []))
        if "*" in resources:
            found += [f"{where}: Resource * for {a}" for a in actions if a not in UNSCOPED_ACTIONS]
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for arn in resource["Properties"].get("ManagedPolicyArns", []):
                if arn not in ALLOWED_MANAGED_POLICIES:
                    found.append(f"{name}: managed policy {arn} is not reviewed")
    return found


def test_no_policy_allows_wildcard_actions_or_resources(transformed: dict[str, Any]) -> None:
    """No Allow statement in the deployed template has a '*' action or a Resource of '*'."""
    assert violations(transformed) == []


def test_the_check_sees_the_expanded_policy_templates(transformed: dict[str, Any]) -> None:
    """The walk covers SAM policy templates and the OnFailure grant, so it checks what deploys."""
    actions = {
        str(action)
        for _, statement in policy_statements(transformed)
        for action in _as_list(statement.get("Action", []))
    }
    assert {"dynamodb:BatchWriteItem", "events:PutEvents", "sqs:SendMessage"} <= actions
    assert {"ses:SendRawEmail", "s3:PutObject", "dynamodb:GetItem"} <= actions


def test_the_check_catches_a_wildcard() -> None:
    """A policy with s3:* on every resource is reported (the check itself can fail)."""
    bad = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyName": "too-broad",
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
                                ]
                            },
                        }
                    ],
                    "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"],
                },
            }
        }
    }
    assert len(violations(bad)) == 3


def test_report_writes_are_limited_to_the_reports_prefix(transformed: dict[str, Any]) -> None:
    """The ingest may put objects only under reports/ and summaries/, never an upload."""
    puts = [
        statement
        for where, statement in policy_statements(transformed)
        if where.startswith("ProcessUserTransactionFunctionRole")
        and "s3:PutObject" in _as_list(statement["Action"])
    ]
    assert [p["Resource"] for p in puts] == [
        {"Fn::Sub": "${TransactionsBucket.Arn}/reports/*"},
        {"Fn::Sub": "${TransactionsBucket.Arn}/summaries/*"},
    ]


def test_the_email_function_reads_only_summaries_of_the_transactions_bucket(
    transformed: dict[str, Any],
) -> None:
    """Claim-checked summaries are readable by the email function; uploads and reports not."""
    gets = [
        statement["Resource"]
        for where, statement in policy_statements(transformed)
        if where.startswith("SendUserEmailFunctionRole")
        and "s3:GetObject" in _as_list(statement["Action"])
    ]
    assert {"Fn::Sub": "${TransactionsBucket.Arn}/summaries/*"} in gets
    assert not any(
        "TransactionsBucket" in json.dumps(g) and "summaries" not in json.dumps(g) for g in gets
    )


# The IAM action each AWS operation the functions' code may await needs. The code is read
# (below) for awaited calls of these names; Powertools' own idempotency calls are covered by
# the template's Idempotency statement and are not in this code.
IAM_ACTION_OF = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "put_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "put_item": "dynamodb:PutItem",
    "get_item": "dynamodb:GetItem",
    "update_item": "dynamodb:UpdateItem",
    "query": "dynamodb:Query",
    "put_events": "events:PutEvents",
    "send_email": "ses:SendEmail",
    "send_raw_email": "ses:SendRawEmail",
    "start_execution": "states:StartExecution",
}
CODE_OF_ROLE = {
    "ProcessUserTransactionFunctionRole": (
        "src/stori_pipeline/ingest",
        "src/stori_pipeline/scaleout/start.py",
        "handlers/process_user_transaction.py",
    ),
    "ProcessLargeTransactionFunctionRole": (
        "src/stori_pipeline/ingest",
        "src/stori_pipeline/scaleout/steps.py",
        "src/stori_pipeline/scaleout/ranges.py",
        "handlers/process_large_transaction.py",
    ),
    "SendUserEmailFunctionRole": ("src/stori_pipeline/email", "handlers/send_user_email.py"),
}


def _snake(operation: str) -> str:
    """``BatchWriteItem`` -> ``batch_write_item`` (botocore's method name of an operation)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def awaited_operations(tree: ast.AST) -> set[str]:
    """Names of methods awaited in ``tree``: ``await client.put_object(...)`` -> put_object.

    The lean DynamoDB path names its operation instead: ``await lean.call("BatchWriteItem",
    …)`` -> batch_write_item.
    """
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Await)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and isinstance(node.value.func.value, ast.Name | ast.Attribute)
        ):
            found.add(node.value.func.attr)
            first = node.value.args[0] if node.value.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(_snake(first.value))
    return found


def operations_called(*paths: str) -> set[str]:
    """The awaited method names (:func:`awaited_operations`) in files or folders of the repo."""
    found = set()
    for path in paths:
        files = [REPO / path] if path.endswith(".py") else sorted((REPO / path).rglob("*.py"))
        for file in files:
            found |= awaited_operations(ast.parse(file.read_text(encoding="utf-8")))
    return found


def test_the_scan_sees_sdk_calls_and_the_lean_dynamodb_call() -> None:
    """``client.put_events(…)`` and the lean path's ``call("BatchWriteItem", …)`` both count."""
    code = "async def f():\n    await lean.call('BatchWriteItem', b'')\n    await c.put_events()"
    assert awaited_operations(ast.parse(code)) & set(IAM_ACTION_OF) == {
        "batch_write_item",
        "put_events",
    }


@pytest.mark.parametrize("role", sorted(CODE_OF_ROLE))
def test_every_operation_the_code_calls_is_granted(role: str, transformed: dict[str, Any]) -> None:
    """Every AWS call in a function's code is allowed by its role (moto does not enforce IAM)."""
    aws_calls = operations_called(*CODE_OF_ROLE[role]) & set(IAM_ACTION_OF)
    assert aws_calls, f"no AWS calls found for {role}: the scan is broken"
    granted = {
        action
        for where, statement in policy_statements(transformed)
        if where.startswith(role) and statement["Effect"] == "Allow"
        for action in _as_list(statement.get("Action", []))
    }
    missing = {IAM_ACTION_OF[op] for op in aws_calls} - granted
    assert not missing, f"{role} calls operations its policy does not allow: {sorted(missing)}"


# What each kind of state in the workflow's definition needs its role to allow.
STATE_MACHINE_ACTION_OF = {
    "arn:aws:states:::lambda:invoke": "lambda:InvokeFunction",
    "arn:aws:states:::sqs:sendMessage": "sqs:SendMessage",
    "arn:aws:states:::s3:getObject": "s3:GetObject",
}


def _states(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in states.values():
        yield state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _states(processor["States"])


def test_the_workflow_role_allows_every_state_of_its_definition(
    transformed: dict[str, Any],
) -> None:
    """Each Task, ItemReader and Distributed Map of the ASL is allowed by the workflow's role."""
    definition = json.loads((REPO / "statemachine" / "ingest.asl.json").read_text())
    needed = set()
    for state in _states(definition["States"]):
        for resource in (state.get("Resource"), state.get("ItemReader", {}).get("Resource")):
            if resource:
                needed.add(STATE_MACHINE_ACTION_OF[resource])
        mode = state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode")
        if mode == "DISTRIBUTED":
            needed.add("states:StartExecution")
    assert {"lambda:InvokeFunction", "s3:GetObject", "states:StartExecution"} <= needed
    granted = {
        action
        for where, statement in policy_statements(transformed)
        if where.startswith("IngestStateMachineRole") and statement["Effect"] == "Allow"
        for action in _as_list(statement.get("Action", []))
    }
    assert needed <= granted, sorted(needed - granted)
