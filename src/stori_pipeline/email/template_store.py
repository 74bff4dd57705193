"""The operator's template in S3, cached across warm invocations and revalidated by ETag.

A Lambda execution environment lives for many invocations; downloading the template each time
is wasted latency. :data:`TEMPLATE_CACHE` (module level, so it survives between invocations)
keeps ``(bucket, key) -> (ETag, text)``; each later fetch is a conditional ``GetObject`` with
``IfNoneMatch=<ETag>``: S3 answers ``304 Not Modified`` with no body when the operator has not
changed it, and the new body (and ETag) when they have.

Outcomes: the object's text; or ``None`` (use the packaged template) with an error logged and
a :class:`~stori_pipeline.email.render.TemplateProblem` reported when the object is missing,
forbidden, too large or not UTF-8. Other S3 failures reuse a cached copy when there is one,
and otherwise raise :class:`~stori_pipeline.errors.AwsOperationError` so the invocation is
retried (better a short delay than silently ignoring the operator's template).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from botocore.exceptions import ClientError

from stori_pipeline.email.clients import S3Client
from stori_pipeline.email.render import TemplateProblem, TemplateProblemReporter
from stori_pipeline.email.sandbox import UnusableTemplateError
from stori_pipeline.errors import AwsOperationError

__all__ = [
    "MAX_TEMPLATE_BYTES",
    "TEMPLATE_CACHE",
    "CachedTemplate",
    "TemplateCache",
    "decode_template",
    "fetch_template",
]

logger = logging.getLogger(__name__)

MAX_TEMPLATE_BYTES: Final = 256 * 1024  # a template, not a data file: refuse anything bigger
_MISSING: Final = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_FORBIDDEN: Final = frozenset({"AccessDenied", "403", "Forbidden"})


@dataclass(frozen=True, slots=True)
class CachedTemplate:
    """A template's text and the ETag it had when downloaded."""

    etag: str
    text: str


class TemplateCache:
    """``(bucket, key) -> CachedTemplate`` for the process's life; ``downloads`` counts bodies."""

    __slots__ = ("_entries", "downloads")

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], CachedTemplate] = {}
        self.downloads = 0

    def get(self, bucket: str, key: str) -> CachedTemplate | None:
        """The cached copy, if any."""
        return self._entries.get((bucket, key))

    def put(self, bucket: str, key: str, entry: CachedTemplate) -> None:
        """Remember ``entry`` (replacing an older version)."""
        self._entries[(bucket, key)] = entry

    def discard(self, bucket: str, key: str) -> None:
        """Forget the object (it was deleted or became unreadable)."""
        self._entries.pop((bucket, key), None)

    def clear(self) -> None:
        """Forget everything (tests; a cold start does this implicitly)."""
        self._entries.clear()
        self.downloads = 0


TEMPLATE_CACHE: Final = TemplateCache()


def _problem(
    source: str, reason: str, detail: str, on_problem: TemplateProblemReporter | None
) -> None:
    logger.error(
        "email template %s unusable (%s), using the packaged one: %s", source, reason, detail
    )
    if on_problem is not None:
        on_problem(TemplateProblem(source, reason, detail))


def decode_template(data: bytes) -> str:
    """A template object's text, as the email function accepts it (also ``template preview``).

    Raises:
        UnusableTemplateError: ``too_large`` (over :data:`MAX_TEMPLATE_BYTES`) or ``not_utf8``.
    """
    if len(data) > MAX_TEMPLATE_BYTES:
        raise UnusableTemplateError("too_large", f"{len(data)} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnusableTemplateError("not_utf8", str(exc)) from exc


async def fetch_template(
    s3: S3Client,
    *,
    bucket: str,
    key: str,
    cache: TemplateCache = TEMPLATE_CACHE,
    on_problem: TemplateProblemReporter | None = None,
) -> str | None:
    """The operator's template text, or ``None`` to use the packaged one (see module doc)."""
    source = f"s3://{bucket}/{key}"
    cached = cache.get(bucket, key)
    request: dict[str, str] = {"Bucket": bucket, "Key": key}
    if cached is not None:
        request["IfNoneMatch"] = cached.etag
    try:
        response = await s3.get_object(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if cached is not None and (code in {"304", "NotModified"} or status == 304):
            return cached.text
        if code in _MISSING or code in _FORBIDDEN:
            cache.discard(bucket, key)
            reason = "missing" if code in _MISSING else "forbidden"
            _problem(source, reason, f"GetObject: {code}", on_problem)
            return None
        if cached is not None:
            logger.warning(
                "revalidating %s failed (%s); reusing the cached copy", source, code or status
            )
            return cached.text
        raise AwsOperationError(
            str(error.get("Message", exc)), service="s3", operation="GetObject", code=code or None
        ) from exc

    async with response["Body"] as body:
        if int(response.get("ContentLength") or 0) > MAX_TEMPLATE_BYTES:
            cache.discard(bucket, key)
            _problem(source, "too_large", f"{response['ContentLength']} bytes", on_problem)
            return None
        data: bytes = await body.read()
    cache.downloads += 1
    try:
        text = decode_template(data)
    except UnusableTemplateError as exc:
        cache.discard(bucket, key)
        _problem(source, exc.reason, exc.detail, on_problem)
        return None
    etag = str(response.get("ETag", ""))
    if etag:
        cache.put(bucket, key, CachedTemplate(etag, text))
    return text
