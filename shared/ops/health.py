"""Health report for GET /api/health (no personal data)."""

from __future__ import annotations

import time

from azure.core.exceptions import AzureError

from shared.container import Container
from shared.domain.names import CUSTOMERS


def check_health(container: Container) -> dict:
    started = time.perf_counter()
    checks: dict[str, str] = {}
    try:
        rows = container.tables.table(CUSTOMERS).query_entities("PartitionKey eq 'health'", results_per_page=1)
        next(iter(rows), None)
        checks["tables"] = "ok"
    except AzureError as exc:
        checks["tables"] = f"error: {type(exc).__name__}"
    status = "ok" if all(value == "ok" for value in checks.values()) else "degraded"
    return {"status": status, "checks": checks, "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}
