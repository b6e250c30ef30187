"""What may import what (docs/architecture.md): the deployed app never needs the developer tools, and the domain
never needs the Functions runtime. Every import counts, also those inside functions (loaded lazily)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# Not deployed (.funcignore): the developer tools, the CLI entry and the local host.
NOT_DEPLOYED = ("shared/devtools/", "shared/cli.py", "devhost.py")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def deployed_sources() -> list[Path]:
    paths = [ROOT / "function_app.py", *sorted((ROOT / "functions").rglob("*.py")),
             *sorted((ROOT / "shared").rglob("*.py"))]
    return [p for p in paths if not p.relative_to(ROOT).as_posix().startswith(NOT_DEPLOYED)]


def test_scan_sees_the_deployed_code():
    names = {p.relative_to(ROOT).as_posix() for p in deployed_sources()}
    assert {"function_app.py", "functions/pipeline.py", "shared/container.py"} <= names
    assert not any(name.startswith("shared/devtools/") for name in names)


def test_deployed_code_never_imports_the_developer_tools():
    offenders = {p.relative_to(ROOT).as_posix(): sorted(m for m in imported_modules(p)
                                                         if m == "shared.devtools" or m.startswith("shared.devtools.")
                                                         or m in ("shared.cli", "devhost"))
                 for p in deployed_sources()}
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_the_domain_never_imports_azure_functions():
    offenders = {p.relative_to(ROOT).as_posix(): sorted(m for m in imported_modules(p)
                                                         if m == "azure.functions" or m.startswith("azure.functions."))
                 for p in sorted((ROOT / "shared").rglob("*.py"))}
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_the_scanner_finds_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from shared.devtools.progress import Progress\n    import azure.functions\n")
    assert {"shared.devtools.progress", "azure.functions"} <= imported_modules(module)
