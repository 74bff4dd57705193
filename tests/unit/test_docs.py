"""The repository's documents are what they claim: the diagram is current, SPEC is there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
D2 = REPO / ".tools" / "d2" / "bin" / "d2"


@pytest.mark.skipif(not D2.exists(), reason="D2 not installed: `make docs-diagram` installs it")
def test_architecture_svg_is_the_rendering_of_its_source(tmp_path: Path) -> None:
    """docs/architecture.svg is exactly what docs/architecture.d2 renders to (re-run make)."""
    out = tmp_path / "architecture.svg"
    subprocess.run([str(REPO / "docs" / "render-diagram.sh"), str(out)], check=True)
    committed = (REPO / "docs" / "architecture.svg").read_bytes()
    assert out.read_bytes() == committed, "stale: run `make docs-diagram` and commit the SVG"
