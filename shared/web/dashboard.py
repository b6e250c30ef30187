"""The HTML view of `GET /api/dashboard` (`shared.dashboard.report.build_dashboard`'s result as tables)."""

from __future__ import annotations

from typing import Any

from shared.web.pages import Page, render

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def dashboard_page(data: dict[str, Any]) -> Page:
    """A plain, self-contained page of the dashboard's counts (every value escaped by the template)."""
    opp, journey, delivery = data["opportunities"], data["journey"], data["delivery"]

    def table(title: str, rows: list[tuple], header: tuple = ()) -> dict:
        return {"title": title, "header": header, "rows": [[_fmt(v) for v in row] for row in rows]}

    sections = [
        table("Opportunities by type", list(opp["by_kind"].items()), ("type", "count")),
        table("By owner", list(opp["by_owner"].items()), ("owner", "count")),
        table("By status", list(opp["by_status"].items()), ("status", "count")),
        table("By month", list(opp["by_month"].items()), ("month", "count")),
        table("Conversion", [(k, v["won"], v["lost"], f"{v['rate']:.0%}", v["amount_won"])
                             for k, v in opp["conversion"].items()], ("type", "won", "lost", "rate", "amount won")),
        table("Campaigns", [(r, v["opportunities"], v["won"], v["lost"], v["revenue"])
                            for r, v in opp["campaigns"].items()], ("rule", "opportunities", "won", "lost", "revenue")),
        table("Journey stages", [(stage, n, _or_dash(journey["median_days"].get(stage)),
                                  _or_dash(journey["past_sla"].get(stage))) for stage, n in journey["stages"].items()],
              ("stage", "customers", "median days", "past SLA")),
        table(f"Journey transitions (last {journey['transitions_days']} days)", list(journey["transitions"].items()),
              ("transition", "count")),
        table(f"Deliveries (last {delivery['days']} days)",
              [(channel, status, n)
               for channel, counts in delivery["outcomes"].items() for status, n in counts.items()],
              ("channel", "outcome", "count")),
        table("Dead letters", list(delivery["dead_letters"].items()), ("queue", "messages")),
    ]
    summary = (f"{_fmt(opp['total'])} opportunities, {_fmt(opp['amount_won'])} won; "
               f"{_fmt(delivery['approvals_pending'])} approvals pending; generated {data['generated_at']}")
    return render("dashboard.html", 200, HEADERS, lang="en", title="crmflow dashboard", summary=summary,
                  sections=sections)


def _or_dash(value: Any) -> Any:
    return "—" if value is None else value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
