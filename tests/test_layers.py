"""How the code is layered: Dagster through its public API only (so that an upgrade
cannot break the project unseen), except in the one module that says what Dagster has no
public way for (campaign_pipelines/run_internals.py); and one direction of dependency,
`campaign_pipelines` → `resources` → `schemas`, never back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {ROOT / "campaign_pipelines" / "run_internals.py"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the file imports, at any depth (a function's
    too): `from dagster import _check` is `dagster._check`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def private_dagster_imports(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in imports(path)
        if name.split(".")[0].startswith("dagster") and any(part.startswith("_") for part in name.split(".")[1:])
    ]


def files_of(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def test_no_module_imports_dagster_internals_but_the_one_that_says_why():
    files = files_of("campaign_pipelines", "resources", "schemas")
    assert len(files) > 50
    found = [hit for p in files if p not in ALLOWED for hit in private_dagster_imports(p)]
    assert found == []
    # The exception is real and small: it does import internals, and nothing else lives there.
    (allowed,) = ALLOWED
    assert private_dagster_imports(allowed) and len(allowed.read_text().splitlines()) < 80


def test_dependencies_point_one_way():
    """`schemas` knows nothing above it, `resources` nothing but `schemas`."""
    upward = {"schemas": ("campaign_pipelines", "resources"), "resources": ("campaign_pipelines",)}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for layer, above in upward.items() for path in files_of(layer) for line, name in imports(path)
        if name.split(".")[0] in above
    ]
    assert found == []
