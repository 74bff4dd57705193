"""Run one ``ingest_object`` in a fresh process and print its peak RSS as JSON.

``python -m tests.integration.ingest_rss ENDPOINT BUCKET KEY ETAG TABLE OBJECTS BUS WORKERS``.
A child process gives a clean peak RSS (``VmHWM``) that no earlier test inflated.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aioboto3
from bench.rss import peak_rss_kib

from stori_pipeline.ingest import ingest_object
from stori_pipeline.settings import IngestSettings


async def _run(argv: list[str]) -> dict[str, object]:
    endpoint, bucket, key, etag, table, objects, bus, workers = argv
    settings = IngestSettings(
        transactions_table=table,
        objects_table=objects,
        event_bus_name=bus,
        idempotency_table="unused",
        num_workers=int(workers),
    )
    session = aioboto3.Session(region_name="us-east-1")
    async with (
        session.client("s3", endpoint_url=endpoint) as s3,
        session.client("dynamodb", endpoint_url=endpoint) as dynamodb,
        session.client("events", endpoint_url=endpoint) as events,
    ):
        baseline = peak_rss_kib()
        result = await ingest_object(
            bucket, key, etag, settings=settings, s3=s3, dynamodb=dynamodb, events=events
        )
    return {
        "baselineKiB": baseline,
        "maxrssKiB": peak_rss_kib(),
        "itemsWritten": result.items_written,
        "seconds": result.duration,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_run(sys.argv[1:]))))  # noqa: T201 - the child's output
