"""Cold start: each handler's import time against a minimal boto3-only handler, side by side.

Lambda's init phase is mostly the imports a handler module triggers (no clients or
configuration at import time, see STYLE.md). Each module is imported in a fresh interpreter;
the runs are interleaved (the baseline, then each handler, N times) and the best of N is kept,
because noise on a shared machine only ever adds time. Target: each handler <= 1.5x the
baseline.

The imports the handlers defer to their first invocation (the ingest's aiobotocore/aiohttp
stack, the email's Jinja2/css-inline/aioboto3 stack) are measured too, as "+ first use":
deferring moves that cost out of the init phase into the first invocation, it does not remove
it, and "+ first use" is the honest total. ``--compare DIR`` adds the same cases for another
checkout (e.g. ``git archive main handlers src | tar -x -C DIR``), interleaved with these.

For each handler the top imports of "+ first use" by cumulative time are listed
(``python -X importtime``, each import's best of N runs; importtime itself adds overhead, so
they add up to more than the plain import time). This machine is x86_64 / Python 3.11, not
arm64 / 3.13: read ratios, not milliseconds.

Run: ``.venv/bin/python bench/cold_start.py [--runs 7] [--top 8] [--compare DIR]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "minimal_boto3_handler"
TARGET = 1.5  # a handler's import time over the baseline's
BASELINE_SOURCE = '''"""The smallest useful boto3 handler: one client, built on first use."""
import boto3

_client = None


def handler(event, context):
    global _client
    _client = _client or boto3.client("dynamodb")
    return {"ok": True}
'''
# What each handler imports on its first invocation (see the handlers' _ingest / _send).
FIRST_USE = {
    "process_user_transaction": "stori_pipeline.ingest, aioboto3",
    "send_user_email": "stori_pipeline.email",
}


def _env(extra: Path, root: Path = ROOT) -> dict[str, str]:
    path = os.pathsep.join([str(extra), str(root / "handlers"), str(root / "src")])
    return {**os.environ, "PYTHONPATH": path}


def import_seconds(modules: str, env: dict[str, str]) -> float:
    """Seconds to import ``modules`` (comma-separated) in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    done = subprocess.run(  # noqa: S603 - our own interpreter and module names we chose
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(done.stdout)


def _importtime(code: str, env: dict[str, str]) -> list[tuple[int, str]]:
    """(cumulative µs, indented name) of every import ``python -X importtime -c code`` makes."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module names we chose
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():  # self | cumulative | name
            rows.append((int(parts[1]), parts[2]))
    return rows


def top_imports(module: str, env: dict[str, str], top: int, runs: int) -> list[tuple[float, str]]:
    """The ``top`` direct imports of ``module`` (one or more, comma-separated) by cumulative ms.

    Each import's best of ``runs`` runs: one ``-X importtime`` run on a shared machine can
    charge a package several times its real cost.
    """
    startup = {name.strip() for _, name in _importtime("pass", env)}
    best: dict[str, float] = {}
    for _ in range(runs):
        # -X importtime indents by two spaces per level: the module's own imports are one
        # level down (the interpreter's start-up imports, also at that level, are left out),
        # and their cumulative times add up to the module's.
        for micros, name in _importtime(f"import {module}", env):
            package = name.strip()
            if name.startswith("   ") and name[3] != " " and package not in startup:
                best[package] = min(best.get(package, float("inf")), micros / 1000)
    return sorted(((ms, package) for package, ms in best.items()), reverse=True)[:top]


def main() -> None:
    """Print the side-by-side table and the handlers' top imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="best of N fresh processes")
    parser.add_argument("--top", type=int, default=8, help="top imports listed per handler")
    parser.add_argument("--compare", type=Path, help="another checkout (handlers/, src/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{BASELINE}.py").write_text(BASELINE_SOURCE)
        env = _env(Path(tmp))
        trees = {"": env} | (
            {f" [{args.compare}]": _env(Path(tmp), args.compare)} if args.compare else {}
        )
        cases = {BASELINE: (BASELINE, env)}
        for handler, later in FIRST_USE.items():
            for label, tree_env in trees.items():
                cases[handler + label] = (handler, tree_env)
                cases[f"{handler} + first use{label}"] = (f"{handler}, {later}", tree_env)
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(args.runs):
            for name, (modules, case_env) in cases.items():
                best[name] = min(best[name], import_seconds(modules, case_env))
        base = best[BASELINE]
        print(f"import time, fresh interpreter, best of {args.runs} (interleaved);")
        print(f"ratio to {BASELINE} (target <= {TARGET}x for a handler alone):")
        for name, seconds in best.items():
            ratio = seconds / base
            verdict = ""
            if name != BASELINE and "+ first use" not in name:
                verdict = "  ok" if ratio <= TARGET else "  OVER TARGET"
            print(f"  {name:<48} {seconds * 1000:8.1f} ms  {ratio:5.2f}x{verdict}")
        for handler, later in FIRST_USE.items():
            print(
                f"\ntop imports of {handler} + first use "
                f"(direct imports, cumulative ms, best of {args.runs} -X importtime runs):"
            )
            for ms, package in top_imports(f"{handler}, {later}", env, args.top, args.runs):
                print(f"  {ms:8.1f}  {package}")


if __name__ == "__main__":
    main()
