"""The Azure SDK stays behind its ports: only the storage backend, the Service Bus adapter, the delivery transports
and tokens and the CRM HTTP clients may import `azure.*` inside `shared/`; adapters (`functions/`, the Functions entry
point, the local host) import only `azure.functions`. Read from the source with `ast`, imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.storage.keys import HASHED_PREFIX, digest, email_digest, is_valid_key, readable_key

ROOT = Path(__file__).resolve().parents[2]
MAY_IMPORT_AZURE = ("shared/storage/", "shared/broker/servicebus.py", "shared/delivery/transports.py",
                    "shared/delivery/tokens.py", "shared/crm/dataverse.py")
ADAPTERS = ("functions/", "function_app.py", "devhost.py")


def azure_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [name for name in names if name == "azure" or name.startswith("azure.")]


def test_only_the_ports_import_the_azure_sdk():
    offenders = {}
    for path in sorted([*ROOT.glob("shared/**/*.py"), *ROOT.glob("functions/**/*.py"),
                        ROOT / "function_app.py", ROOT / "devhost.py"]):
        relative = path.relative_to(ROOT).as_posix()
        found = azure_imports(path)
        if relative.startswith(MAY_IMPORT_AZURE) or not found:
            continue
        if relative.startswith(ADAPTERS):
            found = [name for name in found if name != "azure.functions" and not name.startswith("azure.functions.")]
        if found:
            offenders[relative] = found
    assert offenders == {}, f"import the storage layer (shared/storage) instead of the Azure SDK: {offenders}"


def test_the_scan_sees_an_azure_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from azure.data.tables import TableClient\n    import azure.core\n")
    assert azure_imports(probe) == ["azure.data.tables", "azure.core"]


def test_one_key_policy():
    assert readable_key("renewal-reminder:C-001:w30-2026-12-24") == "renewal-reminder:C-001:w30-2026-12-24"
    assert readable_key("株式会社-01") == "株式会社-01"  # readable where Table Storage allows it
    for bad in ("a/b", "a\\b", "a#b", "a?b", "tab\there", "x" * 201, ""):
        key = readable_key(bad)
        assert key == HASHED_PREFIX + digest(bad) and is_valid_key(key)
    assert readable_key("a/b") != readable_key("a_b")  # no collisions, unlike substituting characters
    assert email_digest(" Taro@Example.co.jp ") == email_digest("taro@example.co.jp") == digest("taro@example.co.jp")
