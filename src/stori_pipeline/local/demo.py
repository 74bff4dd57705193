"""The demo: the whole event-driven flow on one machine, from the template that is deployed.

``LocalSession`` owns one provisioned stack and the dispatcher's runtimes; its steps (seed,
upload, dispatch until settled, collect) are separate so tests can interfere between them (a
duplicate delivery, a failing handler). ``run_demo`` chains them for the command line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from stori_pipeline.errors import StoriPipelineError
from stori_pipeline.local.dispatcher import (
    Dispatcher,
    Invocation,
    ProcessRuntime,
    Runtime,
    drain_dead_letters,
)
from stori_pipeline.local.stack import (
    LocalStack,
    clients,
    moto_server,
    provision,
    sent_email_count,
    sent_raw_emails,
)
from stori_pipeline.local.template import StackPlan, TemplateError, load_template, plan_stack
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
    "Upload",
    "find_template",
    "local_plan",
    "run_demo",
]

DEFAULT_ACCOUNT = "AccountId123"
DEFAULT_SENDER = "no-reply@stori.example.com"
EMAIL_DOMAIN = "example.com"
# A generous bound for the demo to settle; it ends as soon as the work is done.
DEFAULT_DEADLINE_SECONDS = 600.0


class DemoError(StoriPipelineError):
    """The local stack could not be set up or did not settle before the deadline."""


class Reporter(Protocol):
    """What the demo tells the person watching it (the CLI draws it; tests ignore it)."""

    def stage(self, text: str) -> None:
        """A step of the demo started or finished."""

    def invocation(self, invocation: Invocation) -> None:
        """A function was invoked."""

    def rows_written(self, written: int, total: int) -> None:
        """Items in the Transactions table so far, of the accepted rows uploaded."""


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def invocation(self, invocation: Invocation) -> None:
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


def local_plan(template: Path, stack_name: str = "stori-local") -> StackPlan:
    """The stack plan of ``template`` with local values for parameters that lack a default."""
    document = load_template(template)
    overrides: dict[str, str] = {}
    for name, declaration in (document.get("Parameters") or {}).items():
        if isinstance(declaration, dict) and "Default" not in declaration:
            overrides[name] = DEFAULT_SENDER if "mail" in name.lower() else "local"
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
    """A local file uploaded to the transactions bucket, and what it should produce."""

    path: Path
    key: str
    accounts: tuple[str, ...]
    rows_accepted: int


@dataclass(frozen=True, slots=True)
class SentEmail:
    """An email moto's SES accepted, written to disk."""

    account_id: str | None
    to: tuple[str, ...]
    subject: str
    eml: Path
    html: Path | None


@dataclass(frozen=True, slots=True)
class AccountReport:
    """What the flow did for one account."""

    account_id: str
    summaries: tuple[AccountSummary, ...]
    rows_rejected: int
    items_written: int
    events_routed: int
    emails: tuple[SentEmail, ...]

    def to_json(self) -> dict[str, Any]:
        """The account's part of ``demo --json``."""
        return {
            "accountId": self.account_id,
            "summaries": [s.to_json() for s in self.summaries],
            "rowsRejected": self.rows_rejected,
            "itemsWritten": self.items_written,
            "eventsRouted": self.events_routed,
            "emails": [
                {
                    "to": list(e.to),
                    "subject": e.subject,
                    "eml": str(e.eml),
                    "html": None if e.html is None else str(e.html),
                }
                for e in self.emails
            ],
        }


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The outcome of a demo run."""

    endpoint: str
    uploads: tuple[Upload, ...]
    accounts: tuple[AccountReport, ...]
    invocations: Mapping[str, Mapping[str, int]]
    dead_letters: Mapping[str, Sequence[dict[str, Any]]]
    unmatched_emails: tuple[SentEmail, ...] = ()
    log_dir: Path | None = None
    reports: tuple[Path, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Every upload processed and every summary emailed, nothing dead-lettered."""
        return not any(self.dead_letters.values())

    def to_json(self) -> dict[str, Any]:
        """``demo --json``."""
        return {
            "ok": self.ok,
            "endpoint": self.endpoint,
            "uploads": [
                {"file": str(u.path), "key": u.key, "accounts": list(u.accounts)}
                for u in self.uploads
            ],
            "accounts": [a.to_json() for a in self.accounts],
            "invocations": {k: dict(v) for k, v in self.invocations.items()},
            "deadLetters": {k: list(v) for k, v in self.dead_letters.items()},
            "rejectedReports": [str(p) for p in self.reports],
            "logs": None if self.log_dir is None else str(self.log_dir),
        }


class LocalSession:
    """One local stack with its dispatcher; use ``LocalSession.open(...)``."""

    def __init__(self, stack: LocalStack, out_dir: Path, reporter: Reporter) -> None:
        self.stack = stack
        self.roles = Roles.of(stack.plan)
        self.out_dir = out_dir
        self.reporter = reporter
        self.uploads: list[Upload] = []
        self.users: dict[str, str] = {}
        self._emails_seen = sent_email_count()
        self._email_names: Counter[str] = Counter()
        self.emails: list[SentEmail] = []
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
        return {
            function.logical_id: overrides.get(function.logical_id)
            or ProcessRuntime(
                function,
                self.stack.function_env(function.logical_id),
                log_path=log_dir / f"{function.name}.log",
            )
            for function in self.stack.plan.functions
        }

    async def seed(self, accounts: Iterable[str], locale: str | None = None) -> None:
        """A verified sender, a demo user per account, and the packaged email template.

        ``locale`` becomes each user's ``Locale`` (none: the deployment's default applies).
        """
        roles = self.roles
        async with clients(self.stack.endpoint, "ses", "dynamodb", "s3") as (ses, dynamodb, s3):
            await ses.verify_email_identity(EmailAddress=roles.sender)
            for account in sorted(set(accounts)):
                address = f"{account}@{EMAIL_DOMAIN}".lower()
                await dynamodb.put_item(
                    TableName=roles.users_table,
                    Item={
                        "AccountId": {"S": account},
                        "Email": {"S": address},
                        "Name": {"S": f"Demo {account}"},
                        **({"Locale": {"S": locale}} if locale else {}),
                    },
                )
                self.users[address] = account
            template = _packaged_email_template()
            if template is not None:
                await s3.put_object(
                    Bucket=roles.templates_bucket, Key=roles.template_key, Body=template
                )
        self.reporter.stage(f"seeded {len(self.users)} users and the email template")

    async def plan_uploads(self, files: Sequence[Path], account: str) -> list[Upload]:
        """Read each file locally (no AWS) to know its accounts and rows before uploading."""
        planned: list[Upload] = []
        for path in files:
            result = await summarize_stream(file_chunks(path), account=account)
            planned.append(
                Upload(
                    path=path,
                    key=f"incoming/{account}/{path.name}",
                    accounts=tuple(a.account_id for a in result.accounts),
                    rows_accepted=result.rows_accepted,
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
        dispatcher = Dispatcher(self.stack, runtimes, on_invocation=self.reporter.invocation)
        expected = {self.roles.ingest: len(self.uploads) if deliveries is None else deliveries}
        total = sum(u.rows_accepted for u in self.uploads)
        watcher = asyncio.create_task(self._watch_rows(total))
        try:
            async with asyncio.timeout(deadline):
                await dispatcher.run(until=dispatcher.until_settled(expected))
        except TimeoutError as exc:
            raise DemoError(f"the flow did not settle within {deadline:.0f} s") from exc
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self.reporter.rows_written(await self._item_count(), total)
        return dispatcher

    async def _item_count(self) -> int:
        async with clients(self.stack.endpoint, "dynamodb") as (dynamodb,):
            table = await dynamodb.describe_table(TableName=self.roles.transactions_table)
        return int(table["Table"]["ItemCount"])

    async def _watch_rows(self, total: int) -> None:
        """Progress for the person watching: items written so far (a display refresh)."""
        async with clients(self.stack.endpoint, "dynamodb") as (dynamodb,):
            while True:
                table = await dynamodb.describe_table(TableName=self.roles.transactions_table)
                self.reporter.rows_written(int(table["Table"]["ItemCount"]), total)
                await asyncio.sleep(0.25)

    async def collect(self, dispatcher: Dispatcher) -> DemoReport:
        """Count what the flow did per account and write each sent email under ``out/``."""
        roles = self.roles
        emails = self.write_new_emails()
        dead = await drain_dead_letters(self.stack)
        summaries: dict[str, list[AccountSummary]] = defaultdict(list)
        rejected: Counter[str] = Counter()
        routed: Counter[str] = Counter()
        seen: set[str] = set()
        for invocation in dispatcher.invocations:
            if invocation.function != roles.email or invocation.message_id in seen:
                continue
            seen.add(invocation.message_id)
            detail = invocation.event.get("detail", {})
            summary = AccountSummary.from_json(detail["summary"])
            routed[summary.account_id] += 1
            summaries[summary.account_id].append(summary)
            rejected[summary.account_id] += int(detail.get("rowsRejected", 0))
        accounts = sorted({a for u in self.uploads for a in u.accounts} | set(summaries))
        async with clients(self.stack.endpoint, "dynamodb", "s3") as (dynamodb, s3):
            reports = [
                AccountReport(
                    account_id=account,
                    summaries=tuple(summaries[account]),
                    rows_rejected=rejected[account],
                    items_written=await _count_items(dynamodb, roles.transactions_table, account),
                    events_routed=routed[account],
                    emails=tuple(e for e in emails if e.account_id == account),
                )
                for account in accounts
            ]
            report_files = await self._download_reports(s3)
        counts: dict[str, dict[str, int]] = {}
        for function in self.stack.queues:
            calls = [i for i in dispatcher.invocations if i.function == function]
            counts[function] = {
                "invocations": len(calls),
                "succeeded": dispatcher.succeeded(function),
                "failed": sum(1 for i in calls if not i.ok),
            }
        return DemoReport(
            endpoint=self.stack.endpoint,
            uploads=tuple(self.uploads),
            accounts=tuple(reports),
            invocations=counts,
            dead_letters=dead,
            unmatched_emails=tuple(e for e in emails if e.account_id is None),
            log_dir=self.out_dir / "logs",
            reports=tuple(report_files),
        )

    def write_new_emails(self) -> list[SentEmail]:
        """Write the emails SES accepted since the last call; return all written so far."""
        self._email_dir.mkdir(parents=True, exist_ok=True)
        for _, destinations, raw in sent_raw_emails(self._emails_seen):
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
            self.emails.append(
                SentEmail(
                    account_id=account,
                    to=to,
                    subject=str(message.get("Subject", "")),
                    eml=eml,
                    html=html,
                )
            )
        return list(self.emails)

    async def _download_reports(self, s3: Any) -> list[Path]:
        """Copy the rejected-rows reports the ingest wrote (``reports/…``) next to the emails."""
        paths: list[Path] = []
        listing = await s3.list_objects_v2(Bucket=self.roles.transactions_bucket, Prefix="reports/")
        for item in listing.get("Contents", []):
            target = self.out_dir / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            body = await s3.get_object(Bucket=self.roles.transactions_bucket, Key=item["Key"])
            target.write_bytes(await body["Body"].read())
            paths.append(target)
        return paths


async def _count_items(dynamodb: Any, table: str, account: str) -> int:
    total = 0
    arguments: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "AccountId = :a",
        "ExpressionAttributeValues": {":a": {"S": account}},
        "Select": "COUNT",
    }
    while True:
        page = await dynamodb.query(**arguments)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


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
    locale: str | None = None,
) -> DemoReport:
    """Provision the stack, seed it, upload ``files``, dispatch until done, report."""
    plan = local_plan(template, stack_name)
    async with LocalSession.open(
        plan, out_dir=out_dir, endpoint=endpoint, reporter=reporter
    ) as session:
        uploads = await session.plan_uploads(files, account)
        # A demo user for each account the files carry (the --account folder's when none do).
        await session.seed({a for u in uploads for a in u.accounts} or {account}, locale)
        await session.upload(uploads)
        dispatcher = await session.dispatch(session.runtimes(runtimes), deadline=deadline)
        return await session.collect(dispatcher)
