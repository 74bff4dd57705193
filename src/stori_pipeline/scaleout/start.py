"""Routing an "Object Created" event to the distributed workflow (objects too big for one function).

The execution is named after the object version's ``importId`` (SPEC §5): Step Functions keeps
an execution name unique per state machine for 90 days, so a repeated delivery of the same
event starts nothing new (``ExecutionAlreadyExists``), whatever the idempotency store says.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from stori_pipeline.errors import AwsOperationError
from stori_pipeline.ingest.keys import ObjectCreated, import_id
from stori_pipeline.ingest.resend import error_code
from stori_pipeline.ingest.s3 import CHANGED_CODES, MISSING_CODES, ObjectGoneError
from stori_pipeline.scaleout.steps import Job

__all__ = ["execution_input", "start_workflow"]


def execution_input(job: Job) -> str:
    """The execution's input document: the job, nothing else."""
    return json.dumps({"job": job.to_json()}, separators=(",", ":"))


async def _resolve(s3: Any, target: ObjectCreated) -> Job:  # noqa: ANN401 - aiobotocore client
    """The job of the event's object: which key candidate exists, and its size."""
    last: str | None = None
    # "null" is the version of an object in a bucket that was never versioned: no version.
    version_id = target.version_id if target.version_id != "null" else None
    version = {"VersionId": version_id} if version_id else {}
    for key in target.keys:
        try:
            # The ETag is compared here rather than with If-Match, which moto's HeadObject
            # answers with 400; a newer version is a changed object either way.
            head = await s3.head_object(Bucket=target.bucket, Key=key, **version)
        except ClientError as exc:
            last = error_code(exc)
            if last in MISSING_CODES:
                continue
            if last in CHANGED_CODES:
                raise ObjectGoneError(target.bucket, target.keys, target.etag, last) from exc
            raise AwsOperationError(
                str(exc), service="s3", operation="HeadObject", code=last
            ) from exc
        if str(head.get("ETag", "")).strip('"') != target.etag:
            raise ObjectGoneError(target.bucket, target.keys, target.etag, "PreconditionFailed")
        return Job(
            target.bucket,
            key,
            target.etag,
            import_id(target.bucket, key, target.etag),
            int(head["ContentLength"]),
            version_id,
            target.sequencer,
        )
    raise ObjectGoneError(target.bucket, target.keys, target.etag, last)


async def start_workflow(
    target: ObjectCreated,
    *,
    state_machine_arn: str,
    s3: Any,  # noqa: ANN401 - aiobotocore clients are untyped
    stepfunctions: Any,  # noqa: ANN401
) -> dict[str, object]:
    """Start the workflow for the event's object version, at most once.

    Returns the handler's result: ``status`` is ``started`` or ``duplicate``.

    Raises:
        ObjectGoneError: the object no longer exists with that ETag (permanent).
        AwsOperationError: S3 or Step Functions failed (the invocation is retried).
    """
    job = await _resolve(s3, target)
    summary: dict[str, object] = {
        "path": "distributed",
        "importId": job.import_id,
        "bucket": job.bucket,
        "key": job.key,
        "etag": job.etag,
        "size": job.size,
    }
    try:
        started = await stepfunctions.start_execution(
            stateMachineArn=state_machine_arn, name=job.import_id, input=execution_input(job)
        )
    except ClientError as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            return {"status": "duplicate", **summary}
        raise AwsOperationError(
            str(exc), service="stepfunctions", operation="StartExecution", code=error_code(exc)
        ) from exc
    return {"status": "started", "executionArn": started["executionArn"], **summary}
