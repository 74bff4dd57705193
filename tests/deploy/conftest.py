"""Fixtures for the deployment tests: the template, and the SAM CLI's isolated environment.

The SAM CLI lives in .tools/sam (installed by `make test` / `make sam-tools`, never in .venv).
Outside CI a missing SAM environment skips the tests that need it; in CI it is a failure,
because `make test` installs it first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from stori_pipeline.cfn import load_template

# The moto server fixtures of the integration suite, shared rather than started twice.
from tests.integration.conftest import aws_endpoint, moto_endpoint, unique  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAM_BIN = REPO / ".tools" / "sam" / "bin"


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml with CloudFormation's short tags turned into long-form intrinsics."""
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def sam_bin() -> Path:
    """The SAM CLI environment's bin directory (skipped locally, required in CI)."""
    if not (SAM_BIN / "sam").exists():
        message = "SAM CLI not installed in .tools/sam: run `make sam-tools` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SAM_BIN


def sam_env() -> dict[str, str]:
    """Environment for SAM subprocesses: telemetry off, a region, no endpoint override."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env.update(SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    return env
