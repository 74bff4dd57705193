"""The inside of a local worker process: one function's execution environment.

Kept to the standard library on purpose: ``spawn`` imports this module before the worker can
do anything, so a light module starts the worker's watch on its parent (and its readiness)
sooner; the handler's own imports come after. Run by
:class:`~stori_pipeline.local.dispatcher.ProcessRuntime`.

The protocol over the pipe: the worker sends ``("ready", None)`` or ``("init_error", text)``
once, then answers each ``(event, context)`` with ``("ok", result)`` or ``("error", text)``.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["plain", "worker_main"]

Handler = Callable[[dict[str, Any], Any], Any]


def plain(result: object) -> Any:
    """The handler's result as plain JSON data (what Lambda would serialize), or None."""
    try:
        return json.loads(json.dumps(result, default=str))
    except (TypeError, ValueError):
        return None


_worker_handler: Handler | None = None


def _worker_init(env: dict[str, str], code_dir: str, handler: str, log_path: str | None) -> None:
    """Become a function's execution environment: its env, its logs, its imported handler."""
    global _worker_handler  # noqa: PLW0603 - one handler per worker process, like Lambda
    os.environ.clear()
    os.environ.update(env)
    if log_path is not None:
        # Powertools logs JSON to stdout; the person watching the demo reads a concise log.
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    if env.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        _skip_tls_setup()
    sys.path.insert(0, code_dir)
    module, attribute = handler.rsplit(".", 1)
    _worker_handler = getattr(importlib.import_module(module), attribute)


def _skip_tls_setup() -> None:
    """Stop aiobotocore loading the CA bundle into a new SSL context for every client.

    The handlers open their clients per invocation, and each client's first request built
    an SSL context and parsed the whole CA bundle: 60% of an email invocation's CPU on the
    local stack — for an emulator spoken to in plain HTTP, where TLS is never used. Only in
    the local worker processes; a context with no CA would refuse any HTTPS peer, so nothing
    is ever trusted by accident. A different aiobotocore without these names is left alone.
    """
    try:
        from aiobotocore import httpsession  # noqa: PLC0415 - only the workers need it
    except ImportError:  # pragma: no cover - the handlers always have it
        return
    if not hasattr(httpsession, "get_cert_path") or not hasattr(
        httpsession.AIOHTTPSession, "_get_ssl_context"
    ):
        return
    context = httpsession.AIOHTTPSession._get_ssl_context(None)  # noqa: SLF001
    httpsession.AIOHTTPSession._get_ssl_context = lambda _self: context  # noqa: SLF001
    httpsession.get_cert_path = lambda _verify: None


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker when the process that started it is gone (even by SIGKILL)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def worker_main(  # noqa: PLR0913, PLR0917 - the environment's parts, passed by spawn
    conn: Any,
    env: dict[str, str],
    code_dir: str,
    handler: str,
    log_path: str | None,
    parent_pid: int,
) -> None:
    """A worker process: init once, then run one invocation per request until the pipe ends."""
    # Ctrl-C reaches the whole foreground process group; the dispatcher stops its workers
    # itself, so a worker must not die mid-request printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        _worker_init(env, code_dir, handler, log_path)
    except BaseException:  # noqa: BLE001 - an init error is the invocation's failure
        conn.send(("init_error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    assert _worker_handler is not None
    while True:
        try:
            event, context = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = _worker_handler(event, context)
        except Exception:  # noqa: BLE001 - the failure crosses the process boundary as text
            conn.send(("error", traceback.format_exc()))
            continue
        conn.send(("ok", plain(result)))
