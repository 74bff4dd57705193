"""The demo: the whole event-driven flow on one machine, from the template that is deployed.

``LocalSession`` owns one provisioned stack and the dispatcher's runtimes; its steps (seed,
upload, dispatch until settled, collect) are separate so tests can interfere between them (a
duplicate delivery, a failing handler). ``run_demo`` chains them for the command line.

Everything the final report says comes from what the invocations returned (the ingest's
counts, the SES message id of each email) and from reading the files locally before the
upload — never from counting the table: the report costs O(accounts), not O(items).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import email
import email.policy
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from stori_pipeline.errors import FileRejectedError, StoriPipelineError
from stori_pipeline.local.dispatcher import (
    Dispatcher,
    Invocation,
    ProcessRuntime,
    Runtime,
    drain_dead_letters,
)
from stori_pipeline.local.outcomes import Described, Outcome, OutcomeBook
from stori_pipeline.local.stack import (
    LocalStack,
    clients,
    moto_server,
    provision,
    sent_email_count,
    sent_raw_emails,
    table_item_count,
)
from stori_pipeline.local.template import (
    StackPlan,
    TemplateError,
    load_template,
    parse_parameter_overrides,
    plan_stack,
)
from stori_pipeline.local.workflows import WorkflowAwareRuntime, workflow_bridge
from stori_pipeline.records import Rejection, is_valid_account, resolve_header
from stori_pipeline.settings import EmailSettings, IngestSettings
from stori_pipeline.stream import file_chunks, summarize_stream
from stori_pipeline.summary import AccountSummary

__all__ = [
    "DEFAULT_ACCOUNT",
    "AccountReport",
    "DemoError",
    "DemoReport",
    "LocalSession",
    "Reporter",
    "Roles",
    "SentEmail",
    "Upload",
    "UploadReport",
    "find_template",
    "local_plan",
    "run_demo",
    "upload_report",
]

DEFAULT_ACCOUNT = "AccountId123"
DEFAULT_SENDER = "no-reply@stori.example.com"
EMAIL_DOMAIN = "example.com"
# A generous bound for the demo to settle; it ends as soon as the work is done.
DEFAULT_DEADLINE_SECONDS = 1800.0
# Rejected rows whose AccountId is itself invalid belong to no account.
NO_ACCOUNT = ""


class DemoError(StoriPipelineError):
    """The local stack could not be set up or did not settle before the deadline."""


@dataclass(frozen=True, slots=True)
class SentEmail:
    """An email moto's SES accepted, written to disk; ``message_id`` is SES's."""

    message_id: str
    account_id: str | None
    to: tuple[str, ...]
    subject: str
    eml: Path
    html: Path | None

    def to_json(self) -> dict[str, Any]:
        """The email's part of ``demo --json``."""
        return {
            "messageId": self.message_id,
            "to": list(self.to),
            "subject": self.subject,
            "eml": str(self.eml),
            "html": None if self.html is None else str(self.html),
        }


class Reporter(Protocol):
    """What the demo tells the person watching it (the CLI draws it; tests ignore it)."""

    def stage(self, text: str) -> None:
        """A step of the demo started or finished."""

    def invocation(self, described: Described, sent: SentEmail | None) -> None:
        """A function was invoked; ``sent`` is the email that invocation sent, if any."""

    def rows_written(self, written: int, total: int) -> None:
        """Items in the Transactions table so far, of the accepted rows uploaded."""


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def invocation(self, described: Described, sent: SentEmail | None) -> None:
        pass

    def rows_written(self, written: int, total: int) -> None:
        pass


def find_template(start: Path | None = None) -> Path:
    """``template.yaml`` in the working directory or the source checkout of this package."""
    candidates = [(start or Path.cwd()) / "template.yaml"]
    candidates.append(Path(__file__).resolve().parents[3] / "template.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DemoError("template.yaml not found (run from the project's root or pass --template)")


def local_plan(
    template: Path,
    stack_name: str = "stori-local",
    parameter_overrides: Sequence[str] = (),
) -> StackPlan:
    """The stack plan of ``template``, as ``sam deploy --parameter-overrides`` would make it.

    ``parameter_overrides`` are ``Key=Value`` items checked against the template's
    ``Parameters`` (:func:`~stori_pipeline.local.template.parse_parameter_overrides`); a
    parameter without a default and not overridden gets a local value.
    """
    document = load_template(template)
    overrides: dict[str, str] = {}
    for name, declaration in (document.get("Parameters") or {}).items():
        if isinstance(declaration, dict) and "Default" not in declaration:
            overrides[name] = DEFAULT_SENDER if "mail" in name.lower() else "local"
    overrides.update(parse_parameter_overrides(parameter_overrides, document))
    return plan_stack(
        document,
        template_dir=template.parent,
        stack_name=stack_name,
        parameter_overrides=overrides,
    )


@dataclass(frozen=True, slots=True)
class Roles:
    """Which of the template's resources play which part, found by the code's own settings."""

    ingest: str
    email: str
    transactions_bucket: str
    transactions_table: str
    users_table: str
    templates_bucket: str
    template_key: str
    sender: str

    @classmethod
    def of(cls, plan: StackPlan) -> Roles:
        """Find the functions by the variables their settings require, the rest from those."""
        ingest = plan.function_named(IngestSettings.REQUIRED[0])
        mailer = plan.function_named(EmailSettings.REQUIRED[0])
        # The bucket the processing rule listens to, as the template's pattern names it.
        names = {b.name for b in plan.buckets if b.eventbridge}
        for rule in plan.rules:
            if rule.function == ingest.logical_id:
                pattern_names = rule.pattern.get("detail", {}).get("bucket", {}).get("name", [])
                names &= {n for n in pattern_names if isinstance(n, str)} or names
        if len(names) != 1:
            raise TemplateError(f"cannot tell the transactions bucket among {sorted(names)}")
        # The code's own settings read the template's variables: a missing one fails here.
        ingest_settings = IngestSettings.from_env(ingest.environment)
        email_settings = EmailSettings.from_env(mailer.environment)
        return cls(
            ingest=ingest.logical_id,
            email=mailer.logical_id,
            transactions_bucket=names.pop(),
            transactions_table=ingest_settings.transactions_table,
            users_table=email_settings.users_table,
            templates_bucket=email_settings.templates_bucket,
            template_key=email_settings.template_key,
            sender=email_settings.sender_email,
        )


@dataclass(frozen=True, slots=True)
class Upload:
    """A local file uploaded to the transactions bucket, and what reading it locally found.

    ``accepted`` and ``rejected`` count rows per account; rejected rows whose own AccountId
    is invalid are counted under ``NO_ACCOUNT`` (``""``).
    """

    path: Path
    key: str
    accounts: tuple[str, ...]
    rows_accepted: int
    accepted: Mapping[str, int] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UploadReport:
    """What processing one uploaded file did, from the ingest invocation's own result.

    ``path`` is how the file was processed (``"single"``: one invocation read it whole) and
    ``ranges`` the parts it was split into (``None`` for a single read). ``outcome`` is the
    first settled outcome of the object's events; ``duplicates`` counts later deliveries
    idempotency skipped. ``report`` is the local copy of the rejected-rows report.
    """

    file: Path
    key: str
    outcome: str
    reason: str
    path: str = "single"
    ranges: int | None = None
    rows_read: int | None = None
    rows_accepted: int | None = None
    rows_rejected: int | None = None
    items_written: int | None = None
    events_published: int | None = None
    file_error: str | None = None
    file_error_reason: str | None = None
    accounts: tuple[str, ...] = ()
    report: Path | None = None
    duplicates: int = 0

    @property
    def delivered(self) -> bool:
        """Stored, and every account's summary event published."""
        return self.outcome == Outcome.PROCESSED

    def to_json(self) -> dict[str, Any]:
        """The upload's part of ``demo --json`` (``uploads[]``)."""
        return {
            "file": str(self.file),
            "key": self.key,
            "outcome": self.outcome,
            "reason": self.reason,
            "path": self.path,
            "ranges": self.ranges,
            "rowsRead": self.rows_read,
            "rowsAccepted": self.rows_accepted,
            "rowsRejected": self.rows_rejected,
            "itemsWritten": self.items_written,
            "eventsPublished": self.events_published,
            "fileError": self.file_error,
            "fileErrorReason": self.file_error_reason,
            "accounts": list(self.accounts),
            "report": None if self.report is None else str(self.report),
            "duplicateDeliveries": self.duplicates,
        }


def upload_report(
    upload: Upload, outcomes: Sequence[Described], report: Path | None
) -> UploadReport:
    """The record of one upload, built from its ingest invocations' outcomes (in order).

    The numbers are the ingest's result (``rowsRead`` … ``fileError``); ``report`` is where
    the rejected-rows report it wrote was copied, or ``None``. This is the one place the
    per-upload record is built (a split, distributed ingest extends it here).
    """
    settled = [d for d in outcomes if d.final]
    first = next((d for d in settled if d.outcome is not Outcome.DUPLICATE), None)
    duplicates = sum(1 for d in settled if d.outcome is Outcome.DUPLICATE)
    if first is None:
        return UploadReport(
            file=upload.path,
            key=upload.key,
            outcome="not settled" if not settled else str(Outcome.DUPLICATE),
            reason="no invocation of the ingest settled this upload",
            duplicates=duplicates,
        )
    result = first.invocation.result if isinstance(first.invocation.result, dict) else {}
    processed = first.outcome in {Outcome.PROCESSED, Outcome.FILE_REJECTED}
    return UploadReport(
        file=upload.path,
        key=upload.key,
        outcome=str(first.outcome),
        reason=first.reason,
        path=str(result.get("path") or "single"),
        ranges=result.get("ranges"),
        rows_read=result.get("rowsRead") if processed else None,
        rows_accepted=result.get("rowsAccepted") if processed else None,
        rows_rejected=result.get("rowsRejected") if processed else None,
        items_written=result.get("itemsWritten") if processed else None,
        events_published=result.get("eventsPublished") if processed else None,
        file_error=result.get("fileError"),
        file_error_reason=result.get("fileErrorDetail"),
        accounts=tuple(str(a) for a in result.get("accounts") or ()),
        report=report,
        duplicates=duplicates,
    )


@dataclass(frozen=True, slots=True)
class EmailOutcome:
    """How the summary email of one event ended for an account."""

    outcome: str
    reason: str
    email: SentEmail | None

    def to_json(self) -> dict[str, Any]:
        """One entry of an account's ``deliveries`` in ``demo --json``."""
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "email": None if self.email is None else self.email.to_json(),
        }


@dataclass(frozen=True, slots=True)
class AccountReport:
    """What the flow did for one account.

    ``rows_rejected`` are this account's rejected rows (by their own AccountId, or all of a
    file without that column); ``items_written`` its accepted rows of the files the ingest
    stored whole; ``deliveries`` how each of its summary events ended.
    """

    account_id: str
    summaries: tuple[AccountSummary, ...]
    rows_rejected: int
    items_written: int
    events_routed: int
    emails: tuple[SentEmail, ...]
    deliveries: tuple[EmailOutcome, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The account's part of ``demo --json``."""
        return {
            "accountId": self.account_id,
            "summaries": [s.to_json() for s in self.summaries],
            "rowsRejected": self.rows_rejected,
            "itemsWritten": self.items_written,
            "eventsRouted": self.events_routed,
            "emails": [e.to_json() for e in self.emails],
            "deliveries": [d.to_json() for d in self.deliveries],
        }


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The outcome of a demo run; ``problems`` lists what was not delivered, in words."""

    endpoint: str
    uploads: tuple[UploadReport, ...]
    accounts: tuple[AccountReport, ...]
    invocations: Mapping[str, Mapping[str, int]]
    dead_letters: Mapping[str, Sequence[dict[str, Any]]]
    unmatched_emails: tuple[SentEmail, ...] = ()
    log_dir: Path | None = None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Everything delivered: every file stored, every summary emailed, nothing dead."""
        return not self.problems

    @property
    def reports(self) -> tuple[Path, ...]:
        """The local copies of the rejected-rows reports."""
        return tuple(u.report for u in self.uploads if u.report is not None)

    def to_json(self) -> dict[str, Any]:
        """``demo --json``."""
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "endpoint": self.endpoint,
            "uploads": [u.to_json() for u in self.uploads],
            "accounts": [a.to_json() for a in self.accounts],
            "invocations": {k: dict(v) for k, v in self.invocations.items()},
            "deadLetters": {k: list(v) for k, v in self.dead_letters.items()},
            "rejectedReports": [str(p) for p in self.reports],
            "logs": None if self.log_dir is None else str(self.log_dir),
        }


def _has_account_column(path: Path) -> bool:
    """Whether the file's header names an AccountId column (a bad header: no)."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        for record in csv.reader(text):
            if not any(field.strip() for field in record):
                continue
            try:
                return resolve_header(record).account is not None
            except FileRejectedError:
                return False
    return False


def _rejected_by_account(path: Path, lines: set[int]) -> Counter[str]:
    """The AccountId of each rejected line (``NO_ACCOUNT`` when invalid), counted.

    The stream numbers a record by the physical line it ends on, as ``csv.reader`` counts
    lines, so one plain pass over the file finds each rejected record again.
    """
    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        reader = csv.reader(text)
        position: int | None = None
        for record in reader:
            if position is None:
                if any(field.strip() for field in record):
                    position = resolve_header(record).account
                continue
            if reader.line_num in lines:
                raw = (
                    record[position].strip(" \t")
                    if position is not None and position < len(record)
                    else ""
                )
                counts[raw if is_valid_account(raw) else NO_ACCOUNT] += 1
    return counts


def _adder(lines: set[int]) -> Callable[[Rejection], None]:
    def add(rejection: Rejection) -> None:
        lines.add(rejection.line)

    return add


class LocalSession:
    """One local stack with its dispatcher; use ``LocalSession.open(...)``."""

    def __init__(self, stack: LocalStack, out_dir: Path, reporter: Reporter) -> None:
        self.stack = stack
        self.roles = Roles.of(stack.plan)
        self.out_dir = out_dir
        self.reporter = reporter
        self.uploads: list[Upload] = []
        self.users: dict[str, str] = {}
        self.book = OutcomeBook(ingest=self.roles.ingest, email=self.roles.email)
        self._emails_seen = sent_email_count()
        self._email_names: Counter[str] = Counter()
        self.emails: list[SentEmail] = []
        self._emails_by_id: dict[str, SentEmail] = {}
        self._email_dir = out_dir / "emails"
        shutil.rmtree(self._email_dir, ignore_errors=True)  # only this session's emails

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        plan: StackPlan,
        *,
        out_dir: Path,
        endpoint: str | None = None,
        reporter: Reporter | None = None,
    ) -> AsyncIterator[LocalSession]:
        """Start moto (unless ``endpoint`` is given) and provision ``plan`` on it."""
        reporter = reporter or _Silent()
        async with AsyncExitStack() as exits:
            if endpoint is None:
                endpoint = exits.enter_context(moto_server())
            reporter.stage(f"emulator at {endpoint}")
            stack = await provision(endpoint, plan)
            reporter.stage(
                f"provisioned {len(plan.buckets)} buckets, {len(plan.tables)} tables, "
                f"{len(plan.rules)} rules, {len(plan.functions)} function queues + DLQs"
            )
            yield cls(stack, out_dir, reporter)

    def runtimes(self, overrides: Mapping[str, Runtime] | None = None) -> dict[str, Runtime]:
        """A warm worker-process runtime per function (logs under ``out/logs``), or overrides."""
        overrides = dict(overrides or {})
        log_dir = self.out_dir / "logs"
        shutil.rmtree(log_dir, ignore_errors=True)  # this run's logs only
        log_dir.mkdir(parents=True)
        runtimes: dict[str, Runtime] = {
            function.logical_id: overrides.get(function.logical_id)
            or ProcessRuntime(
                function,
                self.stack.function_env(function.logical_id),
                log_path=log_dir / f"{function.name}.log",
            )
            for function in self.stack.plan.functions
        }
        ingest = self.roles.ingest
        if self.stack.state_machines and ingest in runtimes:
            # An upload routed to the workflow is settled when its execution ends.
            runtimes[ingest] = WorkflowAwareRuntime(runtimes[ingest], self.stack.endpoint)
        return runtimes

    def dispatcher(self, runtimes: Mapping[str, Runtime]) -> Dispatcher:
        """A dispatcher whose every invocation is described to the reporter as it ends."""
        return Dispatcher(self.stack, runtimes, on_invocation=self.on_invocation)

    def on_invocation(self, invocation: Invocation) -> Described:
        """Describe ``invocation`` (with the email it sent) and tell the reporter."""
        self.write_new_emails()
        described = self.book.describe(invocation)
        sent = None
        if described.message_id is not None:
            sent = self._emails_by_id.get(described.message_id)
        self.reporter.invocation(described, sent)
        return described

    async def seed(self, accounts: Iterable[str], locale: str | None = None) -> None:
        """A verified sender, a demo user per account, and the packaged email template.

        ``locale`` becomes each user's ``Locale`` (none: the deployment's default applies).
        """
        roles = self.roles
        async with clients(self.stack.endpoint, "ses", "dynamodb", "s3") as (ses, dynamodb, s3):
            await ses.verify_email_identity(EmailAddress=roles.sender)
            users = sorted(set(accounts))
            for start in range(0, len(users), 25):
                items = []
                for account in users[start : start + 25]:
                    address = f"{account}@{EMAIL_DOMAIN}".lower()
                    items.append(
                        {
                            "PutRequest": {
                                "Item": {
                                    "AccountId": {"S": account},
                                    "Email": {"S": address},
                                    "Name": {"S": f"Demo {account}"},
                                    **({"Locale": {"S": locale}} if locale else {}),
                                }
                            }
                        }
                    )
                    self.users[address] = account
                pending: dict[str, Any] = {roles.users_table: items}
                while pending:
                    response = await dynamodb.batch_write_item(RequestItems=pending)
                    pending = response.get("UnprocessedItems") or {}
            template = _packaged_email_template()
            if template is not None:
                await s3.put_object(
                    Bucket=roles.templates_bucket, Key=roles.template_key, Body=template
                )
        self.reporter.stage(f"seeded {len(self.users)} users and the email template")

    async def plan_uploads(self, files: Sequence[Path], account: str) -> list[Upload]:
        """Read each file locally (no AWS) to know its accounts and rows before uploading.

        A file with an AccountId column goes to ``incoming/<file>`` (its rows name their
        accounts); one without goes to ``incoming/<account>/<file>``.
        """
        planned: list[Upload] = []
        for path in files:
            lines: set[int] = set()
            result = await summarize_stream(
                file_chunks(path), account=account, on_reject=_adder(lines)
            )
            by_column = _has_account_column(path)
            if not by_column:
                rejected = Counter({account: result.rows_rejected} if result.rows_rejected else {})
            elif lines:
                rejected = await asyncio.to_thread(_rejected_by_account, path, lines)
            else:
                rejected = Counter()
            planned.append(
                Upload(
                    path=path,
                    key=f"incoming/{path.name}" if by_column else f"incoming/{account}/{path.name}",
                    accounts=tuple(a.account_id for a in result.accounts),
                    rows_accepted=result.rows_accepted,
                    accepted={a.account_id: a.transaction_count for a in result.accounts},
                    rejected=dict(rejected),
                )
            )
        return planned

    async def upload(self, uploads: Sequence[Upload]) -> None:
        """Put every file into the transactions bucket at once (S3 → EventBridge → queue)."""
        async with clients(self.stack.endpoint, "s3") as (s3,):
            await asyncio.gather(
                *(
                    s3.put_object(
                        Bucket=self.roles.transactions_bucket,
                        Key=u.key,
                        Body=u.path.read_bytes(),
                    )
                    for u in uploads
                )
            )
        self.uploads.extend(uploads)
        self.reporter.stage(
            f"uploaded {len(uploads)} file(s) to s3://{self.roles.transactions_bucket}/incoming/"
        )

    async def dispatch(
        self,
        runtimes: Mapping[str, Runtime],
        *,
        deliveries: int | None = None,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> Dispatcher:
        """Run the dispatcher until every upload is settled and every queue is empty."""
        dispatcher = self.dispatcher(runtimes)
        expected = {self.roles.ingest: len(self.uploads) if deliveries is None else deliveries}
        total = sum(u.rows_accepted for u in self.uploads)
        watcher = asyncio.create_task(self._watch_rows(total))
        try:
            async with asyncio.timeout(deadline):
                with workflow_bridge(self.stack, dispatcher, self.reporter.stage):
                    await dispatcher.run(until=dispatcher.until_settled(expected))
        except TimeoutError as exc:
            raise DemoError(f"the flow did not settle within {deadline:.0f} s") from exc
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        written = sum(
            int(d.invocation.result.get("itemsWritten", 0))
            for d in self.book.described
            if d.invocation.function == self.roles.ingest
            and d.outcome in {Outcome.PROCESSED, Outcome.FILE_REJECTED}
            and isinstance(d.invocation.result, dict)
        )
        self.reporter.rows_written(written, total)
        return dispatcher

    async def _watch_rows(self, total: int) -> None:
        """Progress for the person watching: items written so far (a display refresh)."""
        table = self.roles.transactions_table
        while True:
            # Read from the emulator in this process, not with DescribeTable: moto counts
            # its items by iterating a dict other request threads are inserting into.
            count = table_item_count(table)
            if count is None:
                return  # the emulator runs elsewhere: no progress bar
            self.reporter.rows_written(count, total)
            await asyncio.sleep(0.25)

    async def collect(self, dispatcher: Dispatcher) -> DemoReport:
        """What the flow did, per upload and per account, from the invocations' results."""
        roles = self.roles
        self.write_new_emails()
        dead = await drain_dead_letters(self.stack)
        described = self.book.described
        ingests: dict[str, list[Described]] = defaultdict(list)
        for d in described:
            if d.invocation.function == roles.ingest:
                ingests[d.subject].append(d)
        async with clients(self.stack.endpoint, "s3") as (s3,):
            uploads = []
            for upload in self.uploads:
                outcomes = ingests.get(upload.key, [])
                uploads.append(
                    upload_report(upload, outcomes, await self._download_report(s3, outcomes))
                )
        accounts = self._account_reports(uploads)
        counts: dict[str, dict[str, int]] = {}
        for function in self.stack.queues:
            calls = [d for d in described if d.invocation.function == function]
            counts[function] = {
                "invocations": len(calls),
                "succeeded": dispatcher.succeeded(function),
                "failed": sum(1 for d in calls if not d.invocation.ok),
                "deadLettered": dispatcher.dead_lettered(function),
            }
        return DemoReport(
            endpoint=self.stack.endpoint,
            uploads=tuple(uploads),
            accounts=accounts,
            invocations=counts,
            dead_letters=dead,
            unmatched_emails=tuple(e for e in self.emails if e.account_id is None),
            log_dir=self.out_dir / "logs",
            problems=self._problems(uploads, accounts, dead),
        )

    def _account_reports(self, uploads: Sequence[UploadReport]) -> tuple[AccountReport, ...]:
        roles = self.roles
        summaries: dict[str, list[AccountSummary]] = defaultdict(list)
        deliveries: dict[str, list[EmailOutcome]] = defaultdict(list)
        settled: set[str] = set()
        for d in self.book.described:
            invocation = d.invocation
            if invocation.function != roles.email or not d.final:
                continue
            if invocation.message_id in settled:
                continue  # a retried event counts once, by how it finally ended
            settled.add(invocation.message_id)
            detail = invocation.event.get("detail") or {}
            try:
                summary = AccountSummary.from_json(detail["summary"])
            except (KeyError, TypeError, ValueError):
                continue
            if d.outcome is not Outcome.DUPLICATE:  # a redelivered event is one summary
                summaries[summary.account_id].append(summary)
            sent = None if d.message_id is None else self._emails_by_id.get(d.message_id)
            deliveries[summary.account_id].append(EmailOutcome(str(d.outcome), d.reason, sent))
        stored = {
            u.key
            for u in uploads
            if u.items_written is not None and u.items_written == u.rows_accepted
        }
        items: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for upload in self.uploads:
            rejected.update(upload.rejected)
            if upload.key in stored:
                items.update(upload.accepted)
        accounts = sorted(
            {a for u in self.uploads for a in u.accounts}
            | set(summaries)
            | {a for a in rejected if a != NO_ACCOUNT}
        )
        return tuple(
            AccountReport(
                account_id=account,
                summaries=tuple(summaries[account]),
                rows_rejected=rejected[account],
                items_written=items[account],
                events_routed=len(deliveries[account]),
                emails=tuple(o.email for o in deliveries[account] if o.email is not None),
                deliveries=tuple(deliveries[account]),
            )
            for account in accounts
        )

    def _problems(
        self,
        uploads: Sequence[UploadReport],
        accounts: Sequence[AccountReport],
        dead: Mapping[str, Sequence[dict[str, Any]]],
    ) -> tuple[str, ...]:
        problems = [
            f"{upload.key}: {upload.outcome} ({upload.reason})"
            for upload in uploads
            if not upload.delivered
        ]
        for account in accounts:
            problems.extend(
                f"{account.account_id}: email {d.outcome} ({d.reason})"
                for d in account.deliveries
                if d.outcome not in {Outcome.SENT, Outcome.DUPLICATE}
            )
        for function, events in dead.items():
            if events:
                problems.append(f"{len(events)} event(s) dead-lettered by {function}")
        return tuple(dict.fromkeys(problems))

    def write_new_emails(self) -> list[SentEmail]:
        """Write the emails SES accepted since the last call; return all written so far.

        Each gets its own file, named after its account (``<account>.eml``, then
        ``<account>-2.eml`` …): two emails to one account never overwrite each other.
        """
        self._email_dir.mkdir(parents=True, exist_ok=True)
        for message_id, destinations, raw in sent_raw_emails(self._emails_seen):
            self._emails_seen += 1
            message = email.message_from_string(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            # moto lists a header recipient again after the envelope's: keep each address once.
            to = tuple(dict.fromkeys(_addresses(str(a) for a in destinations)))
            account = next(
                (self.users[a] for a in to if a in self.users),
                None,
            )
            stem = _safe(account or "unknown")
            self._email_names[stem] += 1
            if self._email_names[stem] > 1:
                stem = f"{stem}-{self._email_names[stem]}"
            eml = self._email_dir / f"{stem}.eml"
            eml.write_text(raw, encoding="utf-8")
            html_text = _openable_html(message)
            html = None
            if html_text is not None:
                html = self._email_dir / f"{stem}.html"
                html.write_text(html_text, encoding="utf-8")
            sent = SentEmail(
                message_id=message_id,
                account_id=account,
                to=to,
                subject=str(message.get("Subject", "")),
                eml=eml,
                html=html,
            )
            self.emails.append(sent)
            self._emails_by_id[message_id] = sent
        return list(self.emails)

    async def _download_report(self, s3: Any, outcomes: Sequence[Described]) -> Path | None:
        """Copy the rejected-rows report the ingest named in its result under ``out/``."""
        for d in outcomes:
            result = d.invocation.result if isinstance(d.invocation.result, dict) else {}
            key = result.get("reportKey")
            if d.outcome in {Outcome.PROCESSED, Outcome.FILE_REJECTED} and key:
                target = self.out_dir / str(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                body = await s3.get_object(Bucket=self.roles.transactions_bucket, Key=key)
                target.write_bytes(await body["Body"].read())
                return target
        return None


def _addresses(values: Iterable[str]) -> list[str]:
    from email.utils import getaddresses  # noqa: PLC0415

    return [address.lower() for _, address in getaddresses(list(values))]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _openable_html(message: EmailMessage) -> str | None:
    """The HTML part, with ``cid:`` images inlined as data URIs so a browser shows them."""
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return None
    html = str(part.get_content())
    for attachment in message.walk():
        content_id = str(attachment.get("Content-ID", "")).strip("<>")
        if not content_id:
            continue
        payload = attachment.get_payload(decode=True)
        if isinstance(payload, bytes):
            data = base64.b64encode(payload).decode("ascii")
            html = html.replace(
                f"cid:{content_id}", f"data:{attachment.get_content_type()};base64,{data}"
            )
    return html


def _packaged_email_template() -> bytes | None:
    """The email template shipped in the package (``stori_pipeline.email``), if installed."""
    try:
        source = resources.files("stori_pipeline.email") / "templates" / "email.html.j2"
        return source.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        return None


async def run_demo(  # noqa: PLR0913 - keyword-only options of one command
    files: Sequence[Path],
    *,
    account: str = DEFAULT_ACCOUNT,
    out_dir: Path,
    template: Path,
    reporter: Reporter | None = None,
    runtimes: Mapping[str, Runtime] | None = None,
    endpoint: str | None = None,
    stack_name: str = "stori-local",
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    parameter_overrides: Sequence[str] = (),
    locale: str | None = None,
) -> DemoReport:
    """Provision the stack, seed it, upload ``files``, dispatch until done, report."""
    plan = local_plan(template, stack_name, parameter_overrides)
    async with LocalSession.open(
        plan, out_dir=out_dir, endpoint=endpoint, reporter=reporter
    ) as session:
        uploads = await session.plan_uploads(files, account)
        # A demo user for each account the files carry (the --account folder's when none do).
        await session.seed({a for u in uploads for a in u.accounts} or {account}, locale)
        await session.upload(uploads)
        dispatcher = await session.dispatch(session.runtimes(runtimes), deadline=deadline)
        return await session.collect(dispatcher)
