"""A new version of an object replaces the old one's rows, in any delivery order (SPEC §4).

The events are the ones moto really emits for each upload; moto gives every event the same
``sequencer``, so tests that need an order set it as S3 would (a later write, a larger hex
value — of any length). The bucket is versioned, as deployed, so an older version stays
readable and its late event really is processed.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from handlers.process_user_transaction import handler
from stori_pipeline.ingest import ingest_object
from stori_pipeline.ingest.keys import MAX_SORT_KEY_BYTES, normalize_sequencer
from stori_pipeline.ingest.versions import (
    ObjectBusyError,
    ObjectSupersededError,
    ObjectVersion,
    VersionLedger,
)
from stori_pipeline.retry import RetryPolicy
from tests.integration.ingest_stack import FakeLambdaContext, IngestStack

FOUR = b"Id,Date,Transaction\n1,7/15,+60.5\n2,7/28,-10.3\n3,8/2,-20.46\n4,8/13,+10\n"
ONE = b"Id,Date,Transaction\n9,9/1,+5\n"


pytestmark = pytest.mark.usefixtures("no_backoff_sleeps")  # retry backoffs never sleep


@pytest.fixture
def stack(ingest_stack: IngestStack) -> IngestStack:
    """This test's resources with a versioned bucket, as deployed, and the handler's environment."""
    ingest_stack.client("s3").put_bucket_versioning(
        Bucket=ingest_stack.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return ingest_stack


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    """Call the handler as Lambda would."""
    return handler(event, FakeLambdaContext())  # type: ignore[arg-type]


def sequenced(event: dict[str, Any], sequencer: str) -> dict[str, Any]:
    """The event with S3's ``sequencer`` set (moto sends one constant for every write)."""
    changed = copy.deepcopy(event)
    changed["detail"]["object"]["sequencer"] = sequencer
    return changed


def rows(stack: IngestStack) -> dict[tuple[str, str], tuple[str, Decimal]]:
    """(account, Id) -> (SourceETag, Amount) of every item."""
    return {
        (i["AccountId"], i["TransactionId"]): (i["SourceETag"], i["Amount"]) for i in stack.items()
    }


def test_an_overwrite_leaves_exactly_the_new_versions_rows(stack: IngestStack) -> None:
    """4 rows, then the same key with 1 row: the table holds that 1 row, and the email agrees."""
    key = "incoming/A1/ex.csv"
    first = invoke(stack.upload(key, FOUR))
    second = invoke(stack.upload(key, ONE))

    assert (first["itemsWritten"], second["itemsWritten"]) == (4, 1)
    assert second["itemsDeleted"] == 4
    assert rows(stack) == {("A1", "9"): (second["etag"], Decimal(5))}
    events = stack.summary_events(expected=2)
    assert events[-1]["detail"]["summary"]["transactionCount"] == 1


def test_a_late_older_version_never_brings_its_rows_back(stack: IngestStack) -> None:
    """The newer version is processed first; the older one's late event changes nothing."""
    key = "incoming/A1/late.csv"
    old = sequenced(stack.upload(key, FOUR), "0A1")
    new = sequenced(stack.upload(key, ONE), "0B00")  # longer, and later: compare padded

    assert invoke(new)["status"] == "processed"
    stack.summary_events(expected=1)
    late = invoke(old)

    assert late["status"] == "skipped"
    assert "older than the version ingested" in late["reason"]
    assert set(rows(stack)) == {("A1", "9")}
    assert stack.summary_events() == []


def test_a_repeated_delivery_of_the_old_version_after_the_new_one_is_refused(
    stack: IngestStack,
) -> None:
    """In order, then the old event again (after its idempotency record expired)."""
    key = "incoming/A1/again.csv"
    old = sequenced(stack.upload(key, FOUR), "10")
    new = sequenced(stack.upload(key, ONE), "11")
    assert invoke(old)["status"] == "processed"
    assert invoke(new)["itemsDeleted"] == 4
    stack.client("dynamodb").delete_table(TableName=stack.idempotency_table)
    stack.create_idempotency_table()

    assert invoke(old)["status"] == "skipped"
    assert set(rows(stack)) == {("A1", "9")}


def test_accounts_the_new_version_no_longer_has_lose_their_rows(stack: IngestStack) -> None:
    """Multi-account file: Bob disappears from the new version, so do his rows."""
    key = "incoming/shared/multi.csv"
    invoke(stack.upload(key, b"Id,Date,Amount,AccountId\n1,7/15,1,Alice\n2,7/16,2,Bob\n"))
    second = invoke(stack.upload(key, b"Id,Date,Amount,AccountId\n1,7/15,3,Alice\n"))

    assert rows(stack) == {("Alice", "1"): (second["etag"], Decimal(3))}
    entries = stack.client("dynamodb").scan(TableName=stack.objects_table)["Items"]
    assert sorted(e["Entry"]["S"] for e in entries) == ["account#Alice", "version"]


def test_the_deleted_count_adds_up_every_accounts_rows(stack: IngestStack) -> None:
    """Accounts are cleaned concurrently; the reported count is every old row deleted."""
    key = "incoming/shared/many.csv"
    accounts = ["Alice", "Bob", "Carol", "Dave"]
    old = "".join(f"{i},7/{i % 28 + 1},{i}.25,{a}\n" for a in accounts for i in range(1, 61))
    invoke(stack.upload(key, b"Id,Date,Amount,AccountId\n" + old.encode()))
    second = invoke(stack.upload(key, b"Id,Date,Amount,AccountId\n999,8/1,5,Alice\n"))

    assert len(rows(stack)) == 1
    assert second["itemsDeleted"] == len(accounts) * 60


def test_another_key_sharing_the_prefix_keeps_its_rows(stack: IngestStack) -> None:
    """Replacing "x.csv" leaves "x.csv#2.csv" alone, though its TransactionKeys start alike."""
    invoke(stack.upload("incoming/A1/x.csv", FOUR))
    neighbour = invoke(stack.upload("incoming/A1/x.csv#2.csv", FOUR))
    invoke(stack.upload("incoming/A1/x.csv", ONE))

    kept = [i for i in stack.items() if i["SourceKey"] == "incoming/A1/x.csv#2.csv"]
    assert len(kept) == 4
    assert {i["SourceETag"] for i in kept} == {neighbour["etag"]}


async def test_only_a_replacement_reads_rows_back(
    stack: IngestStack, aio_session: Any, aws_endpoint: str
) -> None:
    """A key's first version costs no Query; its second reads the recorded account once."""
    key = "incoming/A1/counted.csv"
    queries: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        queries.append(params["TableName"])

    async def ingest(body: bytes) -> Any:
        etag = stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"]
        async with (
            aio_session.client("s3", endpoint_url=aws_endpoint) as s3,
            aio_session.client("dynamodb", endpoint_url=aws_endpoint) as dynamodb,
            aio_session.client("events", endpoint_url=aws_endpoint) as events,
        ):
            dynamodb.meta.events.register("provide-client-params.dynamodb.Query", count)
            return await ingest_object(
                stack.bucket,
                key,
                etag.strip('"'),
                settings=stack.settings(),
                s3=s3,
                dynamodb=dynamodb,
                events=events,
            )

    first = await ingest(FOUR)
    assert (first.items_deleted, queries) == (0, [stack.objects_table])

    second = await ingest(ONE)
    assert second.items_deleted == 4
    assert queries[1:] == [stack.objects_table, stack.table]


def test_a_rejected_new_version_removes_the_old_rows(stack: IngestStack) -> None:
    """The current object has a bad header: it has no rows, so the table has none for it."""
    key = "incoming/A1/broken.csv"
    invoke(stack.upload(key, FOUR))
    stack.summary_events(expected=1)

    response = invoke(stack.upload(key, b"Foo,Date,Transaction\n1,7/15,+1\n"))

    assert response["fileError"] == "bad_header"
    assert stack.items() == []
    assert stack.summary_events() == []


def test_a_key_of_1024_bytes_with_the_longest_ids_fits_dynamodbs_sort_key(
    stack: IngestStack,
) -> None:
    """S3's longest key and 64-character, 4-byte Ids: stored, and replaced by a new version."""
    folder = "incoming/A1/"
    key = folder + "é" * ((1024 - len(folder) - 4) // 2) + ".csv"
    key += "x" * (1024 - len(key.encode()))
    assert len(key.encode()) == 1024
    ids = ["\U0001f600" * 64, "\U0001f601" * 64]
    body = f"Id,Date,Transaction\n{ids[0]},7/15,+1\n{ids[1]},7/16,+2\n".encode()

    first = invoke(stack.upload(key, body))
    assert first["itemsWritten"] == 2
    stored = stack.items()
    assert all(len(i["TransactionKey"].encode()) <= MAX_SORT_KEY_BYTES for i in stored)
    assert {i["TransactionId"] for i in stored} == set(ids)

    second = invoke(stack.upload(key, f"Id,Date,Transaction\n{ids[0]},7/15,+3\n".encode()))
    assert second["itemsDeleted"] == 1
    assert rows(stack) == {("A1", ids[0]): (second["etag"], Decimal(3))}


# --- the lease: two versions of one key never write at the same time --------------------------


class Clock:
    """A settable clock (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        """The time now."""
        return self.now


def ledger(stack: IngestStack, client: Any, etag: str, sequencer: str, clock: Clock) -> Any:
    """A ledger for version ``etag`` of one key, waiting at most 0 s for a busy key."""
    return VersionLedger(
        client,
        objects_table=stack.objects_table,
        transactions_table=stack.table,
        version=ObjectVersion(
            stack.bucket, "incoming/A1/k.csv", etag, normalize_sequencer(sequencer)
        ),
        policy=RetryPolicy(max_attempts=3),
        wait_seconds=0,
        clock=clock,
    )


async def test_an_older_version_is_refused_while_a_newer_one_holds_the_lease(
    stack: IngestStack, dynamodb: Any
) -> None:
    """Newer in progress: the older version gives up at once (permanent), writing nothing."""
    clock = Clock()
    newer = ledger(stack, dynamodb, "e-new", "20", clock)
    await newer.acquire()

    with pytest.raises(ObjectSupersededError, match="being ingested"):
        await ledger(stack, dynamodb, "e-old", "1F", clock).acquire()


async def test_a_newer_version_waits_for_an_older_one_in_progress_then_takes_over(
    stack: IngestStack, dynamodb: Any
) -> None:
    """Older in progress: the newer one is busy (transient) until the lease ends."""
    clock = Clock()
    older = ledger(stack, dynamodb, "e-old", "1F", clock)
    await older.acquire()
    newer = ledger(stack, dynamodb, "e-new", "20", clock)

    with pytest.raises(ObjectBusyError):
        await newer.acquire()
    await older.replace(["A1"])  # the older one finishes and commits
    assert await newer.acquire() is False
    await newer.replace(["A1"])

    with pytest.raises(ObjectSupersededError, match="ingested"):
        await ledger(stack, dynamodb, "e-old", "1F", clock).acquire()


async def test_an_expired_lease_of_a_crashed_ingest_is_taken_over(
    stack: IngestStack, dynamodb: Any
) -> None:
    """A holder that died without releasing blocks the key only until its lease expires."""
    clock = Clock()
    await ledger(stack, dynamodb, "e-old", "1F", clock).acquire()
    newer = ledger(stack, dynamodb, "e-new", "20", clock)
    with pytest.raises(ObjectBusyError):
        await newer.acquire()

    clock.now += 961
    assert await newer.acquire() is False


async def test_a_failed_ingest_releases_its_lease(stack: IngestStack, dynamodb: Any) -> None:
    """Released (even by another process's ledger), the key is free for any version at once."""
    clock = Clock()
    await ledger(stack, dynamodb, "e-1", "1F", clock).acquire()
    await ledger(stack, dynamodb, "e-1", "1F", clock).release()

    assert await ledger(stack, dynamodb, "e-2", "1F", clock).acquire() is False
