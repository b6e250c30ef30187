"""Daily housekeeping timer (Table Storage has no TTL)."""

import logging
from datetime import UTC, datetime

import azure.functions as func

from shared.container import get_container
from shared.ops.cleanup import purge_deliveries

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.function_name("cleanup_timer")
@bp.timer_trigger(arg_name="timer", schedule="0 30 18 * * *", use_monitor=True)  # 03:30 in Tokyo, after the sweep
def cleanup_timer(timer: func.TimerRequest) -> None:
    container = get_container()
    report = purge_deliveries(container.storage, datetime.now(UTC), container.settings.audit_retention_days)
    log.info("cleanup: %d expired delivery records, %d old audit rows, %d decided approvals, %d journey steps "
             "deleted", report.idempotency_records, report.audit_rows, report.approvals, report.journey_steps)
