"""The SAM CLI accepts the template, and `sam build` makes a correct arm64 / cp313 artifact.

`sam build` runs without Docker: the makefile build method cross-installs wheels for Lambda's
platform (see the Makefile). This machine cannot import aarch64 extension modules, so the
artifact is checked by file headers, wheel tags and an import walk over the handlers' sources.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, TEMPLATE, sam_env

LAMBDA_LIMIT = 250 * 1024 * 1024  # unzipped function + layers
EM_AARCH64 = 183  # ELF e_machine
FUNCTIONS = {
    "ProcessUserTransactionFunction": "process_user_transaction",
    "SendUserEmailFunction": "send_user_email",
}
NEVER_SHIPPED = {"moto", "yaml", "pytest", "hypothesis", "mypy", "ruff", "rich", "pygments"}


def _sam(sam_bin: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(sam_bin / "sam"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=sam_env(),
        check=False,
        timeout=900,
    )


@pytest.mark.slow
def test_sam_validate_lint_passes(sam_bin: Path) -> None:
    """`sam validate --lint` accepts template.yaml (any cfn-lint match, even a warning, fails)."""
    done = _sam(sam_bin, "validate", "--lint", "--template-file", str(TEMPLATE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout


@pytest.mark.slow
def test_cfn_lint_has_no_informational_findings(sam_bin: Path) -> None:
    """cfn-lint finds nothing even at the informational level (explicit deletion policies)."""
    done = subprocess.run(
        [str(sam_bin / "cfn-lint"), "--include-checks", "I", "--", str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=sam_env(),
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr


@pytest.mark.slow
def test_lint_rejects_a_broken_template(sam_bin: Path, tmp_path: Path) -> None:
    """The lint step can fail: a misspelled resource type is reported."""
    broken = tmp_path / "template.yaml"
    text = TEMPLATE.read_text(encoding="utf-8")
    broken.write_text(text.replace("Type: AWS::SQS::Queue\n", "Type: AWS::SQS::Queuee\n"))
    done = subprocess.run(
        [str(sam_bin / "cfn-lint"), "--", str(broken)],
        capture_output=True,
        text=True,
        env=sam_env(),
        check=False,
    )
    assert done.returncode != 0
    assert "E3006" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def build_dir(sam_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `sam build` once into a temporary directory; return it."""
    out = tmp_path_factory.mktemp("sam") / "build"
    done = _sam(sam_bin, "build", "--template-file", str(TEMPLATE), "--build-dir", str(out))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out


def _layer(build_dir: Path) -> Path:
    return build_dir / "DependenciesLayer" / "python"


def _files(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_every_compiled_module_is_for_aarch64_cp313(build_dir: Path) -> None:
    """Each .so is an aarch64 ELF tagged cpython-313-aarch64 or abi3, never x86_64.

    Libraries a wheel vendors (auditwheel's ``<package>.libs/``, e.g. numpy's OpenBLAS) are
    not Python modules and carry no such tag; they are still aarch64 ELF files.
    """
    shared = [p for p in _files(build_dir) if p.name.endswith(".so") or ".so." in p.name]
    assert shared, "expected compiled dependencies (aiohttp, multidict, css_inline, ...)"
    for path in shared:
        header = path.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", path
        assert int.from_bytes(header[18:20], "little") == EM_AARCH64, path
        if path.parent.name.endswith(".libs"):
            continue
        assert re.search(r"\.(cpython-313-aarch64-linux-gnu|abi3)\.so$", path.name), path.name


@pytest.mark.slow
def test_every_wheel_in_the_layer_is_tagged_for_lambda(build_dir: Path) -> None:
    """Every installed wheel is pure Python, or cp313 / abi3 (<= 3.13) for manylinux aarch64."""
    tags = []
    for wheel in _layer(build_dir).glob("*.dist-info/WHEEL"):
        tags += [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text().splitlines()
            if line.startswith("Tag:")
        ]
    assert tags
    for tag in tags:
        python, abi, platform = tag.split("-")
        if platform == "any":
            assert abi == "none", tag
            continue
        assert re.fullmatch(r"manylinux(2014|_2_\d+)_aarch64", platform), tag
        assert (python, abi) == ("cp313", "cp313") or (
            abi == "abi3" and int(python.removeprefix("cp3")) <= 13
        ), tag


@pytest.mark.slow
def test_layer_ships_runtime_dependencies_only(build_dir: Path) -> None:
    """The layer holds the runtime set from uv.lock: no dev tools, no `local` extra, no CLI-only."""
    top = {p.name.split("-")[0].lower() for p in _layer(build_dir).iterdir()}
    assert {"aioboto3", "aws_lambda_powertools", "jinja2", "css_inline", "babel"} <= top
    assert top & NEVER_SHIPPED == set()


def test_layer_keeps_babel_data_for_the_emails_languages_only(build_dir: Path) -> None:
    """Babel's CLDR data is cut to es*, en* and root, and still formats es-MX and en-US money."""
    layer = _layer(build_dir)
    kept = {p.name for p in (layer / "babel" / "locale-data").glob("*.dat")}
    assert {"root.dat", "es.dat", "es_MX.dat", "es_419.dat", "en.dat", "en_US.dat"} <= kept
    assert {name[:2] for name in kept} == {"ro", "es", "en"}
    script = (
        f"import sys; sys.path.insert(0, {str(layer)!r}); from decimal import Decimal; "
        "from babel.numbers import format_currency as f; from babel.dates import format_skeleton; "
        "import datetime; print(f(Decimal('-15.38'), 'MXN', locale='es_MX'), "
        "f(Decimal('39.74'), 'MXN', locale='en_US'), "
        "format_skeleton('yMMMM', datetime.date(2024, 7, 1), locale='es_MX'))"
    )
    command = [sys.executable, "-I", "-c", script]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 2) == ["-$15.38", "MX$39.74", "julio de 2024\n"]


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """(module, level) for every import statement, at any depth (lazy imports included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node.level
            # `from package import module` imports a submodule too, when one has that name.
            yield from ((f"{node.module}.{alias.name}?", node.level) for alias in node.names)


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolvable(name: str, function_dir: Path, layer: Path) -> bool:
    top = name.split(".", maxsplit=1)[0]
    if top in sys.stdlib_module_names or top == "__future__":
        return True
    return any(
        (root / top).is_dir() or (root / f"{top}.py").is_file() or any(root.glob(f"{top}.*.so"))
        for root in (function_dir, layer)
    )


@pytest.mark.slow
@pytest.mark.parametrize(("function", "module"), sorted(FUNCTIONS.items()))
def test_handler_imports_resolve_in_the_artifact(
    build_dir: Path, function: str, module: str
) -> None:
    """Every import reachable from the handler resolves in the function zip + layer layout."""
    function_dir = build_dir / function
    assert (function_dir / f"{module}.py").is_file()
    assert (function_dir / "stori_pipeline" / "__init__.py").is_file()
    layer = _layer(build_dir)
    seen: set[Path] = set()
    pending = [function_dir / f"{module}.py", function_dir / "stori_pipeline" / "__init__.py"]
    missing = []
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for imported, level in _imports(path):
            optional = imported.endswith("?")
            name = imported.removesuffix("?")
            if level:  # relative import inside stori_pipeline
                package = path.relative_to(function_dir).parent.parts
                name = ".".join([*package[: len(package) - level + 1], name])
            if optional:  # a name imported from a module: follow it only if it is a module
                found = _module_file(function_dir, name)
                if found is not None:
                    pending.append(found)
            elif name.split(".")[0] == "stori_pipeline":
                found = _module_file(function_dir, name)
                if found is None:
                    missing.append(f"{path.name}: {name}")
                else:
                    pending.append(found)
            elif not _resolvable(name, function_dir, layer):
                missing.append(f"{path.name}: {name}")
    assert missing == []


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in _files(root))


@pytest.mark.slow
def test_unzipped_size_is_reported_and_under_the_lambda_limit(
    build_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Function + layer, unzipped, stay under Lambda's 250 MB; the sizes go to test-artifacts/."""
    layer = _size(build_dir / "DependenciesLayer")
    sizes = {name: _size(build_dir / name) for name in FUNCTIONS}
    report = {"DependenciesLayer": layer, **sizes, "limit": LAMBDA_LIMIT}
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "sam-build-sizes.json").write_text(json.dumps(report, indent=1) + "\n")
    with capsys.disabled():
        pass
    for size in sizes.values():
        assert size + layer < LAMBDA_LIMIT


@pytest.mark.slow
def test_built_template_points_at_the_artifacts(build_dir: Path) -> None:
    """The built template's code paths are the artifact directories sam deploy will zip."""
    built = (build_dir / "template.yaml").read_text(encoding="utf-8")
    for name in [*FUNCTIONS, "DependenciesLayer"]:
        assert f"CodeUri: {name}" in built or f"ContentUri: {name}" in built, name
