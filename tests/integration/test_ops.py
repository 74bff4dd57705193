"""Operating a deployed stack (``users``, ``reprocess``, ``status``) against a moto server.

The "deployment" is a CloudFormation stack created on moto whose Outputs carry the names
template.yaml's Outputs carry (the DLQs are the stack's own queues, the rest are this test's
resources), so every command finds its resources through ``--stack-name`` as it would on AWS.
The ingest runs through the real handler; the stack's function is a moto Lambda without
Docker, which accepts ``Invoke`` and echoes the event, so a test can hand that event to the
handler as Lambda would.
"""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.process_user_transaction import handler
from stori_pipeline.cli import main
from stori_pipeline.idempotency import ingest_record_id
from stori_pipeline.ingest import import_id
from stori_pipeline.retry import set_testing
from tests.integration.ingest_stack import FakeLambdaContext, IngestStack

DLQS = (
    "ProcessUserTransactionDLQ",
    "ProcessTransactionRuleDLQ",
    "SendUserEmailDLQ",
    "EmailRuleDLQ",
    "IngestWorkflowDLQ",
)
MULTI = (
    b"TransactionId,Date,Amount,AccountId\n"
    b"1,7/15,+60.5,Alice\n"
    b"2,7/28,-10.3,Alice\n"
    b"1,8/2/2024,-20.46,Bob\n"
)


def _moto_config(endpoint: str, use_docker: bool) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": use_docker}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201


class OpsStack(IngestStack):
    """An ingest stack plus a Users table, a Lambda function and a CloudFormation stack."""

    stack_name: str = ""
    users_table: str = ""
    templates_bucket: str = ""
    function_arn: str = ""

    def deploy(self, *, omit: tuple[str, ...] = ()) -> OpsStack:
        """Create the extra resources and the CloudFormation stack naming all of them."""
        self.create()
        self.users_table = f"users-{self.suffix}"
        self.client("dynamodb").create_table(
            TableName=self.users_table,
            KeySchema=[{"AttributeName": "AccountId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "AccountId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.templates_bucket = f"templates-{self.suffix}"
        self.client("s3").create_bucket(Bucket=self.templates_bucket)
        role = self.client("iam").create_role(
            RoleName=f"ingest-{self.suffix}", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("process_user_transaction.py", "def handler(e, c): pass\n")
        self.function_arn = self.client("lambda").create_function(
            FunctionName=f"ingest-{self.suffix}",
            Runtime="python3.13",
            Role=role,
            Handler="process_user_transaction.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
        outputs: dict[str, Any] = {
            "TransactionsBucketName": {"Value": self.bucket},
            "TransactionsTableName": {"Value": self.table},
            "UsersTableName": {"Value": self.users_table},
            "TemplatesBucketName": {"Value": self.templates_bucket},
            "IdempotencyTableName": {"Value": self.idempotency_table},
            "ProcessUserTransactionFunctionArn": {"Value": self.function_arn},
            **{f"{name}Url": {"Value": {"Ref": name}} for name in DLQS},
        }
        template = {
            "Resources": {name: {"Type": "AWS::SQS::Queue"} for name in DLQS},
            "Outputs": {k: v for k, v in outputs.items() if k not in omit},
        }
        self.stack_name = f"stori-{self.suffix}"
        self.client("cloudformation").create_stack(
            StackName=self.stack_name, TemplateBody=json.dumps(template)
        )
        return self

    def output(self, key: str) -> str:
        """One of the stack's outputs, as CloudFormation reports it."""
        (stack,) = self.client("cloudformation").describe_stacks(StackName=self.stack_name)[
            "Stacks"
        ]
        return next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == key)

    def record(self, record_id: str) -> dict[str, Any] | None:
        """An idempotency item, or ``None``."""
        found: dict[str, Any] | None = (
            self.client("dynamodb")
            .get_item(TableName=self.idempotency_table, Key={"id": {"S": record_id}})
            .get("Item")
        )
        return found


@pytest.fixture
def ops(aws_endpoint: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpsStack]:
    """This test's deployed stack on moto, with the ingest handler's environment set."""
    _moto_config(aws_endpoint, use_docker=False)
    set_testing(True)
    try:
        stack = OpsStack(aws_endpoint, unique).deploy()
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        yield stack
    finally:
        set_testing(False)
        _moto_config(aws_endpoint, use_docker=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``stori-pipeline ARGV``: (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop what the handler logged before
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def ingest(event: dict[str, Any]) -> dict[str, Any]:
    """The ingest handler, called as Lambda would."""
    return handler(event, FakeLambdaContext())  # type: ignore[arg-type]


# --- users -----------------------------------------------------------------------------------


def test_users_put_get_list_delete_by_stack_name(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every users action finds the table from the stack's UsersTableName output."""
    stack = ("--stack-name", ops.stack_name)
    put = run(capsys, "users", "put", "Acc1", "--email", "ana@example.com", "--name", "Ana", *stack)
    assert put[0] == 0, put
    assert (
        run(capsys, "users", "put", "Acc2", "--email", "bo@example.com", "--name", "Bo", *stack)[0]
        == 0
    )

    status, out, _ = run(capsys, "users", "get", "Acc1", "--json", *stack)
    assert status == 0
    assert json.loads(out) == {"AccountId": "Acc1", "Email": "ana@example.com", "Name": "Ana"}

    status, out, err = run(capsys, "users", "list", *stack)
    assert status == 0
    assert sorted(out.splitlines()) == ["Acc1  Ana <ana@example.com>", "Acc2  Bo <bo@example.com>"]
    assert "2 user(s)" in err

    status, out, _ = run(capsys, "users", "delete", "Acc1", *stack)
    assert status == 0
    assert "Acc1" in out
    stored = ops.client("dynamodb").scan(TableName=ops.users_table)["Items"]
    assert [item["AccountId"]["S"] for item in stored] == ["Acc2"]

    status, _, err = run(capsys, "users", "get", "Acc1", *stack)
    assert (status, "no user Acc1") == (1, err.split(": ", 2)[2][:12])
    status, _, err = run(capsys, "users", "delete", "Acc1", *stack)
    assert status == 1
    assert "nothing deleted" in err


def test_template_push_by_stack_name(ops: OpsStack, capsys: pytest.CaptureFixture[str]) -> None:
    """`template push` finds the templates bucket from the TemplatesBucketName output."""
    status, out, _ = run(capsys, "template", "push", "--stack-name", ops.stack_name)
    assert status == 0
    assert f"s3://{ops.templates_bucket}/email/summary.html.j2" in out
    body = ops.client("s3").get_object(Bucket=ops.templates_bucket, Key="email/summary.html.j2")
    assert b"{{" in body["Body"].read()


def test_bad_input_is_refused_before_the_stack_is_looked_up(
    aws_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid account is exit 2 about the account, even with a stack that does not exist."""
    status, _, err = run(
        capsys, "users", "put", "bad!", "--email", "a@b.co", "--name", "A", "--stack-name", "nope"
    )
    assert status == 2
    assert "account" in err
    assert "nope" not in err


def test_users_list_escapes_control_characters(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name written around `users put` with an escape sequence is shown literally."""
    ops.client("dynamodb").put_item(
        TableName=ops.users_table,
        Item={"AccountId": {"S": "X"}, "Name": {"S": "\x1b[31mred"}, "Email": {"S": "x@y.z"}},
    )
    status, out, _ = run(capsys, "users", "list", "--stack-name", ops.stack_name)
    assert status == 0
    assert "\x1b" not in out
    assert "\\x1b[31mred" in out


def test_an_unknown_stack_is_one_line_and_exit_1(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stack name that does not exist is reported as such, not as a traceback."""
    status, _, err = run(capsys, "users", "list", "--stack-name", f"{ops.stack_name}-nope")
    assert status == 1
    assert "does not exist" in err
    assert len(err.splitlines()) == 1


def test_a_stack_without_the_output_names_it(
    aws_endpoint: str, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stack from an older template lacking an output says which one to redeploy for."""
    _moto_config(aws_endpoint, use_docker=False)
    try:
        stack = OpsStack(aws_endpoint, unique).deploy(omit=("UsersTableName",))
    finally:
        _moto_config(aws_endpoint, use_docker=True)
    status, _, err = run(capsys, "users", "get", "A", "--stack-name", stack.stack_name)
    assert status == 1
    assert "UsersTableName" in err


def test_without_a_stack_or_table_nothing_is_called(
    aws_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No flag, no stack, no variable: a usage error (2) naming the three ways."""
    status, _, err = run(capsys, "users", "list")
    assert status == 2
    assert "--table" in err
    assert "--stack-name" in err
    assert "USERS_TABLE" in err


# --- reprocess -------------------------------------------------------------------------------


def test_reprocess_runs_an_ingested_object_again(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """After reprocess the same object version is ingested again, summaries and all."""
    key = "incoming/multi/2024-08.csv"
    event = ops.upload(key, MULTI)
    assert ingest(event)["status"] == "processed"
    assert len(ops.summary_events(expected=2)) == 2
    items = ops.items()
    etag = event["detail"]["object"]["eTag"]
    ident = import_id(ops.bucket, key, etag)
    # What the email function would have stored for one of the two accounts.
    email_record = f"send-user-email.send_user_email._send#{unique_hash(ident)}"
    ops.client("dynamodb").put_item(
        TableName=ops.idempotency_table,
        Item={
            "id": {"S": email_record},
            "status": {"S": "COMPLETED"},
            "expiration": {"N": "4102444800"},
            "data": {"S": json.dumps({"status": "sent", "importId": ident, "accountId": "Bob"})},
        },
    )
    # The duplicate delivery is swallowed: that is why reprocess exists.
    ingest(event)
    assert ops.summary_events() == []

    status, out, err = run(
        capsys, "reprocess", f"s3://{ops.bucket}/{key}", "--stack-name", ops.stack_name, "--json"
    )

    assert status == 0, err
    report = json.loads(out)
    assert report["importId"] == ident
    assert report["removedIngestRecords"] == [ingest_record_id(ops.bucket, key, etag)]
    assert report["removedEmailRecords"] == [email_record]
    assert ops.record(email_record) is None
    assert ops.record(report["removedIngestRecords"][0]) is None
    # Lambda got the event; handed to the handler it runs the object again.
    again = ingest(report["event"])
    assert again["status"] == "processed"
    assert again["importId"] == ident
    resent = ops.summary_events(expected=2)
    assert sorted(e["detail"]["summary"]["accountId"] for e in resent) == ["Alice", "Bob"]
    assert {e["detail"]["importId"] for e in resent} == {ident}
    assert sorted(ops.items(), key=repr) == sorted(items, key=repr)


def unique_hash(text: str) -> str:
    """A stand-in for Powertools' hash of an email key (any text unique to the test)."""
    return f"{text}-bob"


def test_reprocess_says_what_is_re_sent(ops: OpsStack, capsys: pytest.CaptureFixture[str]) -> None:
    """The human statement names the object, the records removed and what is sent again."""
    key = "incoming/Acc1/one.csv"
    ingest(ops.upload(key, b"Id,Date,Transaction\n1,7/15,+1\n"))

    status, out, _ = run(
        capsys, "reprocess", f"s3://{ops.bucket}/{key}", "--stack-name", ops.stack_name
    )

    assert status == 0
    assert f"reprocessing s3://{ops.bucket}/{key}" in out
    assert "remove the ingest's idempotency record: last run read 1 rows" in out
    assert "published again" in out
    assert "emailed again (1 account(s) in the last run)" in out


def test_reprocess_dry_run_changes_nothing(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run reports the record it would remove and leaves it in place."""
    key = "incoming/Acc1/dry.csv"
    event = ops.upload(key, b"Id,Date,Transaction\n1,7/15,+1\n")
    ingest(event)
    record_id = ingest_record_id(ops.bucket, key, event["detail"]["object"]["eTag"])

    status, out, _ = run(
        capsys,
        "reprocess",
        f"s3://{ops.bucket}/{key}",
        "--stack-name",
        ops.stack_name,
        "--dry-run",
    )

    assert status == 0
    assert out.startswith("dry run:")
    assert "would remove the ingest's idempotency record" in out
    assert ops.record(record_id) is not None


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("s3://other-bucket/incoming/A/x.csv", 2, "is not the transactions bucket"),
        ("s3://{bucket}/reports/x.csv", 2, "only keys under incoming/"),
        ("s3://{bucket}/incoming/A/missing.csv", 1, "no object"),
        ("{bucket}/incoming/A/x.csv", 2, "is not s3://BUCKET/KEY"),
    ],
)
def test_reprocess_refuses_what_it_cannot_run(
    ops: OpsStack, capsys: pytest.CaptureFixture[str], url: str, status: int, says: str
) -> None:
    """Another bucket, a key the rule ignores, a missing object, a bad URL: one line each."""
    code, _, err = run(
        capsys, "reprocess", url.format(bucket=ops.bucket), "--stack-name", ops.stack_name
    )
    assert code == status
    assert says in err


# --- status ----------------------------------------------------------------------------------


def _send(ops: OpsStack, queue: str, body: dict[str, Any], **attributes: str) -> None:
    ops.client("sqs").send_message(
        QueueUrl=ops.output(f"{queue}Url"),
        MessageBody=json.dumps(body),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )


def _destination_record(event: dict[str, Any], message: str) -> dict[str, Any]:
    """What Lambda's OnFailure destination puts in the queue (AWS's documented shape)."""
    return {
        "version": "1.0",
        "timestamp": "2026-12-02T10:00:00.000Z",
        "requestContext": {
            "requestId": "r-1",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": message, "errorType": "RetriesExhaustedError"},
    }


def test_status_lists_imports_outcomes_and_dead_letters(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Processed, rejected and dead-lettered imports, and each queue's waiting messages."""
    good = ops.upload("incoming/multi/good.csv", MULTI)
    ingest(good)
    failed = ops.upload("incoming/Acc1/failed.csv", b"Id,Date,Transaction\n1,7/15,+1\n")
    ingest(ops.upload("incoming/Acc1/bad.csv", b"Nope\n1\n"))  # last: it writes a report
    _send(ops, "ProcessUserTransactionDLQ", _destination_record(failed, "throttled"))
    _send(
        ops,
        "EmailRuleDLQ",
        {"detail": {"importId": "f" * 32, "summary": {"accountId": "Zed"}}},
        ERROR_CODE="SDK_CLIENT_ERROR",
        ERROR_MESSAGE="Lambda is throttled",
    )

    status, out, _ = run(capsys, "status", "--stack-name", ops.stack_name, "--json")

    assert status == 0
    report = json.loads(out)
    outcomes = {i["key"]: i for i in report["imports"]}
    assert outcomes["incoming/multi/good.csv"]["outcome"] == "processed"
    assert outcomes["incoming/multi/good.csv"]["rowsRead"] == 3
    assert outcomes["incoming/multi/good.csv"]["accounts"] == 2
    assert outcomes["incoming/Acc1/bad.csv"]["outcome"] == "rejected file: bad_header"
    assert outcomes["incoming/Acc1/failed.csv"]["outcome"] == (
        "dead-lettered in ProcessUserTransactionDLQ: RetriesExhausted after 3 attempt(s): throttled"
    )
    queues = {q["name"]: q for q in report["deadLetterQueues"]}
    assert set(queues) == set(DLQS)
    assert [q["waiting"] for q in queues.values()] == [1, 0, 0, 1, 0]
    (letter,) = queues["EmailRuleDLQ"]["messages"]
    assert letter["what"] == f"summary of import {'f' * 32}, account Zed"
    assert letter["error"] == "SDK_CLIENT_ERROR: Lambda is throttled"
    # Looking left the messages in their queues, visible.
    for name in ("ProcessUserTransactionDLQ", "EmailRuleDLQ"):
        received = ops.client("sqs").receive_message(QueueUrl=ops.output(f"{name}Url"))
        assert len(received.get("Messages", [])) == 1


def test_status_check_fails_while_a_dlq_holds_messages(
    ops: OpsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 when anything is dead-lettered, 0 when every queue is empty."""
    assert run(capsys, "status", "--stack-name", ops.stack_name, "--check")[0] == 0
    _send(ops, "SendUserEmailDLQ", _destination_record({"detail": {}}, "boom"))

    status, out, _ = run(capsys, "status", "--stack-name", ops.stack_name, "--check")

    assert status == 1
    assert "SendUserEmailDLQ: 1 waiting" in out
