"""Import time of each handler module in a fresh interpreter: the cold-start proxy we can measure.

Lambda's init phase is dominated by the imports a handler triggers (no clients are built at
import time, see STYLE.md). Without AWS, the closest measurement is ``python -X importtime``
of each handler module in a new process, best of several runs. This machine is x86_64 with
Python 3.11, not arm64 with 3.13, so read the numbers as relative (handler vs handler, layer vs
per-function package makes no difference: the same files are imported from /opt or /var/task).

Usage: python deploy/import_times.py [MODULES ...]   (MODULES: "a" or "a, b" imported together;
default: both handlers, and the dependency set each real handler imports)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_POWERTOOLS = (
    "aws_lambda_powertools.logging, aws_lambda_powertools.metrics, "
    "aws_lambda_powertools.tracing, aws_lambda_powertools.utilities.idempotency"
)
DEFAULT = (
    "process_user_transaction",
    "send_user_email",
    # What each real handler imports (the proxy while handlers/ holds placeholders).
    "aioboto3",
    "aws_lambda_powertools.utilities.idempotency",
    f"{_POWERTOOLS}, aioboto3, stori_pipeline.stream",
    f"{_POWERTOOLS}, aioboto3, jinja2.sandbox, css_inline, email_validator",
)
RUNS = 5


def import_seconds(module: str) -> float:
    """Best-of-RUNS cumulative import time of ``module`` in a fresh interpreter, in seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "handlers"), str(ROOT / "src")])}
    best = float("inf")
    for _ in range(RUNS):
        code = (
            f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        )
        done = subprocess.run(  # noqa: S603 - our own interpreter and module names we chose
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        best = min(best, float(done.stdout))
    return best


def main() -> None:
    """Print one line per module."""
    for module in sys.argv[1:] or DEFAULT:
        print(f"{import_seconds(module) * 1000:8.1f} ms  {module}")


if __name__ == "__main__":
    main()
