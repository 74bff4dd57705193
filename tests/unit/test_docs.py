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


SEARCHED = ("src", "handlers", "tests", "docs", "bench", "deploy")


def test_every_spec_citation_names_a_section_of_spec_md() -> None:
    """Each "SPEC §n" in the code and docs is a numbered section of the repository's SPEC.md."""
    sections = {
        int(m.group(1))
        for m in re.finditer(r"^## (\d+)\. ", (REPO / "SPEC.md").read_text(), re.MULTILINE)
    }
    files = [REPO / "README.md", REPO / "template.yaml", REPO / "CHANGELOG.md"]
    for folder in SEARCHED:
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in {".py", ".md", ".yaml"}]
    cited: dict[int, str] = {}
    for path in files:
        for number in re.findall(r"§(\d+)", path.read_text(encoding="utf-8")):
            cited.setdefault(int(number), str(path.relative_to(REPO)))
    assert cited, "no citation found: the search is broken"
    assert {n: where for n, where in cited.items() if n not in sections} == {}
