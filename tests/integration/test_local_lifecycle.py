"""The local stack's Lambda behaviour over time: timeouts, and stopping cleanly.

A stub handler that hangs (``tests/local/fixtures/stub_handlers/stub_hang.py``) records the id
of the worker process it runs in, so a test can check that process is gone afterwards.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from stori_pipeline.local.demo import LocalSession
from stori_pipeline.local.outcomes import Outcome
from stori_pipeline.local.template import load_template, plan_stack
from stori_pipeline.synthetic import HeaderStyle, SyntheticSpec, write_synthetic

FIXTURES = Path(__file__).resolve().parent.parent / "local" / "fixtures"
TEMPLATE = FIXTURES / "template.yaml"
INGEST = "ProcessUserTransactionFunction"
# Generous on a loaded 2-core machine: a cold worker imports its handler before it runs.
START_DEADLINE_SECONDS = 120.0
STOP_DEADLINE_SECONDS = 10.0


def _hanging_template(marker: Path, timeout: int) -> dict[str, Any]:
    """The fixture template with the ingest replaced by the hanging stub."""
    template = copy.deepcopy(load_template(TEMPLATE))
    template["Globals"]["Function"]["CodeUri"] = str(FIXTURES / "stub_handlers")
    function = template["Resources"][INGEST]["Properties"]
    function["Handler"] = "stub_hang.handler"
    function["Timeout"] = timeout
    function["Environment"]["Variables"]["HANG_MARKER"] = str(marker)
    return template


def _pids(marker: Path) -> list[int]:
    if not marker.exists():
        return []
    return [int(line) for line in marker.read_text().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not running either.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


async def test_a_hung_handler_is_stopped_at_its_timeout_retried_then_dead_lettered(
    aws_endpoint: str, unique: str, example_csv: Path, tmp_path: Path
) -> None:
    """Timeout: 3 in the template: each attempt is stopped after 3 s, then dead-lettered."""
    marker = tmp_path / "pids"
    plan = plan_stack(
        _hanging_template(marker, timeout=3),
        template_dir=FIXTURES,
        stack_name=f"t{unique}",
        parameter_overrides={"SenderEmail": "sender@example.com"},
    )
    async with LocalSession.open(plan, out_dir=tmp_path / "out", endpoint=aws_endpoint) as session:
        uploads = await session.plan_uploads([example_csv], "AccountId123")
        await session.seed(["AccountId123"])
        await session.upload(uploads)
        dispatcher = await session.dispatch(session.runtimes())
        report = await session.collect(dispatcher)
    calls = [i for i in dispatcher.invocations if i.function == INGEST]
    # MaximumRetryAttempts: 1 in the fixture template: two attempts in all.
    assert [i.attempt for i in calls] == [1, 2]
    assert all(i.error == "Task timed out after 3.00 seconds" for i in calls)
    assert all(i.timed_out for i in calls)
    assert [i.dead_lettered for i in calls] == [False, True]
    assert len(report.dead_letters[INGEST]) == 1
    (upload,) = report.uploads
    assert upload.outcome == Outcome.DEAD_LETTERED
    assert "Task timed out" in upload.reason
    assert not report.ok
    # Each attempt ran in its own worker, and each was stopped like Lambda stops a sandbox.
    pids = _pids(marker)
    assert len(set(pids)) == 2
    assert not any(_alive(pid) for pid in pids)


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stori_pipeline.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        # Its own process group, like a shell's foreground job: Ctrl-C reaches every member.
        start_new_session=True,
    )


def _wait_for_hang(process: subprocess.Popen[str], marker: Path) -> int:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while not _pids(marker):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"the handler never started (exit {process.returncode}): {stderr}")
        time.sleep(0.1)
    (pid,) = _pids(marker)
    return pid


def _stop(process: subprocess.Popen[str], signum: signal.Signals) -> float:
    started = time.monotonic()
    # To the whole group, as a terminal's Ctrl-C (or a service manager's stop) delivers it.
    os.killpg(process.pid, signum)
    try:
        process.communicate(timeout=STOP_DEADLINE_SECONDS * 3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{signum.name} did not stop it")
    return time.monotonic() - started


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_within_seconds_while_a_handler_hangs(
    signum: signal.Signals, example_csv: Path, tmp_path: Path
) -> None:
    """Ctrl-C or SIGTERM during a hung invocation: out in seconds, the worker gone too."""
    marker = tmp_path / "pids"
    template = tmp_path / "template.json"
    template.write_text(json.dumps(_hanging_template(marker, timeout=600)))
    process = _start(
        ["demo", str(example_csv), "--template", str(template), "--out", str(tmp_path / "o")],
        tmp_path,
    )
    worker = _wait_for_hang(process, marker)
    seconds = _stop(process, signum)
    assert process.returncode == 128 + signum
    assert seconds < STOP_DEADLINE_SECONDS
    assert not _alive(worker)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_local_up_stops_within_seconds_while_a_handler_hangs(
    signum: signal.Signals, tmp_path: Path
) -> None:
    """``local up`` on a free port: an upload hangs its handler; a signal stops it all."""
    marker = tmp_path / "pids"
    template = tmp_path / "template.json"
    template.write_text(json.dumps(_hanging_template(marker, timeout=600)))
    process = _start(
        ["local", "up", "--port", "0", "--template", str(template), "--out", str(tmp_path / "o")],
        tmp_path,
    )
    assert process.stdout is not None
    try:
        printed = ""
        while "transactions bucket" not in printed and process.poll() is None:
            printed += process.stdout.readline()
        found = re.search(r"is up at (http://\S+?),", printed)
        bucket = re.search(r"transactions bucket\s+(\S+)", printed)
        assert found, printed
        assert bucket, printed
        s3 = boto3.client("s3", endpoint_url=found.group(1))
        s3.put_object(
            Bucket=bucket.group(1),
            Key="incoming/AccountId123/a.csv",
            Body=b"Id,Date,Amount\n1,7/1,+1\n",
        )
        worker = _wait_for_hang(process, marker)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)  # never leave a stack running after a failure
        process.communicate()
        raise
    seconds = _stop(process, signum)
    assert process.returncode == 128 + signum
    assert seconds < STOP_DEADLINE_SECONDS
    assert not _alive(worker)


@pytest.mark.skipif(shutil.which("aws") is None, reason="needs the AWS CLI on PATH")
def test_local_up_prints_an_upload_command_that_runs_as_printed(
    example_csv: Path, tmp_path: Path
) -> None:
    """The printed `aws … s3 cp` line works with no credentials configured anywhere."""
    process = _start(["local", "up", "--port", "0", "--out", str(tmp_path / "o")], tmp_path)
    assert process.stdout is not None
    try:
        printed = ""
        while "s3 cp file.csv" not in printed and process.poll() is None:
            printed += process.stdout.readline()
        (command,) = [line.strip() for line in printed.splitlines() if "s3 cp file.csv" in line]
        shutil.copy(example_csv, tmp_path / "file.csv")
        # Nothing to fall back on: no credentials in the environment or in any file.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= {
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # The upload flows through: the email function reports the email it sent.
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        outcome = ""
        while "SendUserEmailFunction #" not in outcome and time.monotonic() < deadline:
            outcome = process.stdout.readline()
        assert "AccountId123: sent (to accountid123@example.com)" in outcome
        assert process.stdout.readline().strip().startswith("email: ")
    finally:
        _stop(process, signal.SIGTERM)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_demo_stops_on_sigterm_while_emails_flow(tmp_path: Path) -> None:
    """A stop that lands while events arrive and invocations end is not swallowed."""
    path = tmp_path / "many.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_synthetic(SyntheticSpec(rows=900, accounts=300, seed=3, style=HeaderStyle.GO), out)
    process = _start(["demo", str(path), "--out", str(tmp_path / "o")], tmp_path)
    assert process.stdout is not None
    try:
        sent = 0
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while sent < 3 and time.monotonic() < deadline and process.poll() is None:
            sent += "SendUserEmailFunction #" in process.stdout.readline()
        assert sent == 3, "emails never started flowing"
        workers = _children(process.pid)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    seconds = _stop(process, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    assert seconds < STOP_DEADLINE_SECONDS
    assert workers
    assert not any(_alive(pid) for pid in workers)
