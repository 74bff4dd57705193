"""`stori-pipeline users put` and `template push` seed a deployment (against a moto server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from stori_pipeline import seed
from stori_pipeline.cli import main

REGION = "us-east-1"
TEMPLATE_TEXT = "<p>Hello {{ name }}, your balance is {{ summary.balance }}.</p>\n"


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


@pytest.fixture
def users_table(aws_endpoint: str, unique: str) -> str:
    """A Users table shaped like the template's (PK AccountId)."""
    name = f"users-{unique}"
    _client("dynamodb", aws_endpoint).create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "AccountId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "AccountId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def templates_bucket(aws_endpoint: str, unique: str) -> str:
    """An empty templates bucket."""
    name = f"templates-{unique}"
    _client("s3", aws_endpoint).create_bucket(Bucket=name)
    return name


def _put(endpoint: str, *args: str) -> int:
    return main(["users", "put", *args, "--endpoint-url", endpoint, "--region", REGION])


def test_users_put_writes_the_users_item(aws_endpoint: str, users_table: str) -> None:
    """`users put` stores AccountId -> Email (normalized), Name in the Users table."""
    status = _put(
        aws_endpoint, "AccountId123", "--email", " Ana@Example.COM ", "--name", " Ana Pérez ",
        "--table", users_table,
    )  # fmt: skip
    assert status == 0
    item = _client("dynamodb", aws_endpoint).get_item(
        TableName=users_table, Key={"AccountId": {"S": "AccountId123"}}
    )["Item"]
    assert item == {
        "AccountId": {"S": "AccountId123"},
        "Email": {"S": "Ana@example.com"},
        "Name": {"S": "Ana Pérez"},
    }


def test_users_put_takes_the_table_from_the_functions_variable(
    aws_endpoint: str, users_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --table, USERS_TABLE (the email function's own variable) names the table."""
    monkeypatch.setenv("USERS_TABLE", users_table)
    assert _put(aws_endpoint, "acc-1", "--email", "a@example.com", "--name", "A") == 0
    item = _client("dynamodb", aws_endpoint).get_item(
        TableName=users_table, Key={"AccountId": {"S": "acc-1"}}
    )
    assert item["Item"]["Email"] == {"S": "a@example.com"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad id!", "--email", "a@example.com", "--name", "A"], "account"),
        (["x" * 65, "--email", "a@example.com", "--name", "A"], "account"),
        (["acc", "--email", "not-an-address", "--name", "A"], "email"),
        (["acc", "--email", "a@example.com\nBcc: x@evil.test", "--name", "A"], "email"),
        (["acc", "--email", "a@example.com", "--name", "A\r\nBcc: x@evil.test"], "name"),
        (["acc", "--email", "a@example.com", "--name", "   "], "name"),
    ],
)
def test_users_put_rejects_bad_input_in_one_line(
    aws_endpoint: str,
    users_table: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    """A bad account id, address or name exits 2 with one line naming the field; nothing written."""
    assert _put(aws_endpoint, *args, "--table", users_table) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"users put: {message}:" in err
    scanned = _client("dynamodb", aws_endpoint).scan(TableName=users_table)
    assert scanned["Count"] == 0


def test_users_put_reports_a_missing_table(
    aws_endpoint: str, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table that does not exist is exit 1 and one line with the AWS error code."""
    status = _put(aws_endpoint, "acc", "--email", "a@example.com", "--name", "A",
                  "--table", f"missing-{unique}")  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "ResourceNotFoundException" in err
    assert err.count("\n") == 1


def test_users_put_without_a_table_is_a_usage_error(
    aws_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With neither --table nor USERS_TABLE the command exits 2 and says what to give."""
    assert _put(aws_endpoint, "acc", "--email", "a@example.com", "--name", "A") == 2
    assert "--table" in capsys.readouterr().err


def _push(endpoint: str, *args: str) -> int:
    return main(["template", "push", *args, "--endpoint-url", endpoint, "--region", REGION])


def test_template_push_uploads_the_file(
    aws_endpoint: str, templates_bucket: str, tmp_path: Path
) -> None:
    """`template push FILE` uploads FILE's bytes to email/summary.html.j2 in the bucket."""
    file = tmp_path / "summary.html.j2"
    file.write_text(TEMPLATE_TEXT, encoding="utf-8")
    assert _push(aws_endpoint, str(file), "--bucket", templates_bucket) == 0
    body = (
        _client("s3", aws_endpoint)
        .get_object(Bucket=templates_bucket, Key="email/summary.html.j2")["Body"]
        .read()
    )
    assert body == TEMPLATE_TEXT.encode()


def test_template_push_refuses_a_template_that_does_not_parse(
    aws_endpoint: str, templates_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Jinja2 syntax error exits 2 with its line, and nothing is uploaded."""
    file = tmp_path / "broken.html.j2"
    file.write_text("<p>\n{% if balance %}\n</p>\n", encoding="utf-8")
    assert _push(aws_endpoint, str(file), "--bucket", templates_bucket) == 2
    assert "template: line" in capsys.readouterr().err
    listed = _client("s3", aws_endpoint).list_objects_v2(Bucket=templates_bucket)
    assert listed["KeyCount"] == 0


def test_template_push_keeps_to_the_prefix_the_function_reads(
    aws_endpoint: str, templates_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key outside email/ is refused: the email function may read only email/*."""
    file = tmp_path / "t.html.j2"
    file.write_text(TEMPLATE_TEXT, encoding="utf-8")
    assert _push(aws_endpoint, str(file), "--bucket", templates_bucket, "--key", "t.j2") == 2
    assert "key:" in capsys.readouterr().err


def test_template_push_reports_a_missing_bucket(
    aws_endpoint: str, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bucket that does not exist is exit 1 and one line with NoSuchBucket."""
    file = tmp_path / "t.html.j2"
    file.write_text(TEMPLATE_TEXT, encoding="utf-8")
    assert _push(aws_endpoint, str(file), "--bucket", f"missing-{unique}") == 1
    assert "NoSuchBucket" in capsys.readouterr().err


def test_template_push_without_file_uses_the_packaged_template(
    aws_endpoint: str, templates_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without FILE it pushes the packaged template, or says FILE is required when none ships."""
    packaged = seed.packaged_template()
    status = _push(aws_endpoint, "--bucket", templates_bucket)
    if packaged is None:
        assert status == 2
        assert "FILE: required" in capsys.readouterr().err
        return
    assert status == 0
    body = (
        _client("s3", aws_endpoint)
        .get_object(Bucket=templates_bucket, Key="email/summary.html.j2")["Body"]
        .read()
    )
    assert body == packaged.read_bytes()


def test_users_put_stores_the_locale(aws_endpoint: str, users_table: str) -> None:
    """`users put --locale es_mx` stores Locale es-MX; an unsupported locale writes nothing."""
    args = ("--email", "a@example.com", "--name", "A", "--table", users_table)
    assert _put(aws_endpoint, "acc-mx", *args, "--locale", "es_mx") == 0
    assert _put(aws_endpoint, "acc-fr", *args, "--locale", "fr-FR") == 2
    dynamodb = _client("dynamodb", aws_endpoint)
    item = dynamodb.get_item(TableName=users_table, Key={"AccountId": {"S": "acc-mx"}})["Item"]
    assert item["Locale"] == {"S": "es-MX"}
    assert "Item" not in dynamodb.get_item(
        TableName=users_table, Key={"AccountId": {"S": "acc-fr"}}
    )
