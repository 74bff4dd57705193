"""What a handler module loads at import (Lambda's init): Powertools and boto3, not the stacks.

The ingest's aiobotocore/aiohttp and the email's Jinja2/css-inline/aioboto3 are imported by the
first invocation that needs them (``bench/cold_start.py`` measures the difference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import stori_pipeline
from tests.conftest import REPO

DEFERRED = (
    "aiohttp",
    "aiobotocore",
    "aioboto3",
    "jinja2",
    "css_inline",
    "asyncio",
    "numpy",  # many-account files only (stori_pipeline.bucket_table)
)


def loaded_after_import(module: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after importing ``module``."""
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    path = os.pathsep.join([str(REPO / "handlers"), str(REPO / "src")])
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=True,
    )
    return {name.split(".")[0] for name in json.loads(done.stdout)}


@pytest.mark.parametrize("handler", ["process_user_transaction", "send_user_email"])
def test_a_handler_module_defers_the_async_and_email_stacks(handler: str) -> None:
    """Importing a handler loads boto3 (the idempotency store) but none of the deferred stacks."""
    loaded = loaded_after_import(handler)
    assert "boto3" in loaded
    assert loaded.isdisjoint(DEFERRED), sorted(loaded & set(DEFERRED))


def test_every_public_name_of_the_package_resolves() -> None:
    """The package's lazily imported names are exactly ``__all__`` and each one loads."""
    assert set(stori_pipeline.__all__) == set(stori_pipeline._EXPORTS)
    for name in stori_pipeline.__all__:
        assert getattr(stori_pipeline, name) is not None
    with pytest.raises(AttributeError):
        _ = stori_pipeline.no_such_name  # type: ignore[attr-defined]
