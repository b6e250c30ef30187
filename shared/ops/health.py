"""Health report for GET /api/health (no personal data)."""

from __future__ import annotations

import time

from shared.container import Container
from shared.crm.ingest import enabled_sources
from shared.domain.errors import CrmflowError
from shared.domain.names import CUSTOMERS


def check_health(container: Container) -> dict:
    started = time.perf_counter()
    checks: dict[str, str] = {}
    try:
        next(container.storage.table(CUSTOMERS).query("PartitionKey eq 'health'", page_size=1), None)
        checks["tables"] = "ok"
    except CrmflowError as exc:
        checks["tables"] = f"error: {type(exc).__name__}"
    status = "ok" if all(value == "ok" for value in checks.values()) else "degraded"
    sources = enabled_sources(container.settings)
    return {"status": status, "checks": checks, "crm_sources": [name for name, on in sources.items() if on],
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}
