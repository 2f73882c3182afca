"""The layering contracts in pyproject.toml ([tool.importlinter]) hold, and they bite.

Each test copies our packages and pyproject.toml to a temporary directory and runs the real
``lint-imports`` there: on the untouched copy every contract is kept; a forbidden import written
into the copy (core importing the CLI, a lower layer importing a higher one, a cycle inside a
package) breaks the contract that forbids it, and the report names the contract and the import.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
PACKAGES: list[str] = CONFIG["root_packages"]
CONTRACTS = {c["id"]: c["name"] for c in CONFIG["contracts"]}


def lint_imports_bin() -> str:
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports not installed: it is in the dev extra (pip install -e '.[dev]')")
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Our packages (under 1 MB of sources, templates and YAML) and pyproject.toml, copied."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [lint_imports_bin(), "--no-cache", "--no-logo", *(f"--contract={c}" for c in contracts)]
    return subprocess.run(args, cwd=tree, capture_output=True, text=True, timeout=120, check=False)


def inject(tree: Path, module: str, line: str) -> None:
    """Append an import to a module of the copy (placement does not matter to the import graph)."""
    path = tree / (module.replace(".", "/") + ".py")
    assert path.exists(), path
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # injected by tests/test_import_contracts.py\n",
                    encoding="utf-8")


def status(output: str, contract_id: str) -> str:
    """KEPT or BROKEN, as the report's summary says for the contract."""
    name = " ".join(CONTRACTS[contract_id].split())
    flat = " ".join(output.split())  # the report wraps long names
    found = re.search(re.escape(name) + r" (KEPT|BROKEN)", flat)
    assert found, f"contract {name!r} not in the report:\n{output}"
    return found.group(1)


def test_the_checked_in_contracts_are_the_four_layering_rules() -> None:
    assert set(CONTRACTS) == {"core-is-the-bottom", "no-library-imports-the-apps", "layers", "no-cycles"}
    assert {c["type"] for c in CONFIG["contracts"]} == {"forbidden", "layers", "acyclic_siblings"}


def test_the_untouched_copy_keeps_every_contract(tree: Path) -> None:
    proc = lint(tree)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for contract_id in CONTRACTS:
        assert status(proc.stdout, contract_id) == "KEPT"


@pytest.mark.parametrize(("contract_id", "module", "line", "says"), [
    # core imports nothing of ours: the bottom importing the CLI
    ("core-is-the-bottom", "core.errors", "import patrol.cli", "core is not allowed to import patrol"),
    # no library package imports the apps: alerts reaching into the ticket service
    ("no-library-imports-the-apps", "alerts.outbox", "import tickets.states",
     "alerts is not allowed to import tickets"),
    # layers: models sits below storage
    ("layers", "models.factory", "import storage.db", "models is not allowed to import storage"),
    # no cycles: the sampler importing the worker that imports it
    ("no-cycles", "pipeline.sampler", "import pipeline.worker", "No cycles are allowed in pipeline"),
])
def test_a_forbidden_import_breaks_its_contract(tree: Path, contract_id: str, module: str, line: str,
                                                says: str) -> None:
    before = lint(tree, contract_id)
    inject(tree, module, line)
    after = lint(tree, contract_id)
    assert after.returncode != 0, after.stdout[-4000:]
    assert status(after.stdout, contract_id) == "BROKEN"
    assert says in after.stdout, after.stdout[-4000:]
    assert says not in before.stdout, before.stdout[-4000:]  # the untouched copy did not break it this way
    # the report points at the injected import: importer -> imported (cycles name them relative to the package)
    importer, imported = module, line.removeprefix("import ")
    if contract_id == "no-cycles":
        package = module.split(".")[0]
        importer, imported = importer.removeprefix(package), imported.removeprefix(package)
    assert f"{importer} -> {imported}" in after.stdout, after.stdout[-4000:]
