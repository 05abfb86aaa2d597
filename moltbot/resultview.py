"""A run's result as the terminal tables `moltbot run` and `moltbot demo` print (en or ko)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from moltbot.formatting import format_money, format_number, format_pct

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "kpi": "KPI",
        "value": "value",
        "revenue": "revenue",
        "orders": "orders",
        "units": "units",
        "aov": "average order",
        "vs_day": "vs previous day",
        "vs_week": "vs same day last week",
        "cancelled": "cancelled/refunded",
        "anomaly": "anomaly",
        "anomaly_yes": "yes, unusual revenue",
        "no": "no",
        "top": "top product",
        "route": "route",
        "severity": "severity",
        "outcome": "outcome",
        "via": "via",
        "note": "note",
        "deliveries": "Deliveries",
        "dry_run": "DRY RUN: nothing was sent or recorded",
        "warning": "warning",
        "sku": "SKU",
        "change": "change",
        "items": "items",
        "responses": "responses",
        "rows": "sheet rows",
        "attention": "need attention",
        "notion": "Notion page",
        "created": "created",
        "commented": "commented",
        "rejected": "rejected",
        "unchanged": "unchanged",
        "nothing": "nothing to send",
        "done": "sent",
        "already_done": "already sent, skipped",
        "dry_run_status": "would send",
        "failed": "failed",
        "dead": "dead letter",
        "in_doubt": "in doubt",
        "held": "held by another run",
    },
    "ko": {
        "kpi": "지표",
        "value": "값",
        "revenue": "매출",
        "orders": "주문 수",
        "units": "판매 수량",
        "aov": "평균 주문 금액",
        "vs_day": "전일 대비",
        "vs_week": "전주 같은 요일 대비",
        "cancelled": "취소/환불",
        "anomaly": "이상 징후",
        "anomaly_yes": "있음, 평소와 다른 매출",
        "no": "없음",
        "top": "최다 매출 상품",
        "route": "경로",
        "severity": "심각도",
        "outcome": "결과",
        "via": "전달 채널",
        "note": "비고",
        "deliveries": "전달",
        "dry_run": "미리보기 실행: 아무것도 보내거나 기록하지 않았습니다",
        "warning": "경고",
        "sku": "SKU",
        "change": "변화",
        "items": "품목",
        "responses": "응답",
        "rows": "시트 행",
        "attention": "확인 필요",
        "notion": "Notion 페이지",
        "created": "생성",
        "commented": "댓글",
        "rejected": "거절",
        "unchanged": "변화 없음",
        "nothing": "보낼 것이 없습니다",
        "done": "보냄",
        "already_done": "이미 보냄, 건너뜀",
        "dry_run_status": "보낼 예정",
        "failed": "실패",
        "dead": "데드 레터",
        "in_doubt": "확인 필요",
        "held": "다른 실행이 처리 중",
    },
}


def words(locale: str) -> dict[str, str]:
    """The view's words in `locale` (English when it has none)."""
    return _WORDS.get(locale, _WORDS["en"])


def kpi_table(
    result: dict[str, Any], *, currency: str, locale: str, title: str | None = None
) -> Table:
    """The daily report's KPIs as a two-column table."""
    w = words(locale)
    kpis = result["kpis"]

    def money(value: float) -> str:
        return format_money(value, currency, locale)

    table = Table(title=title or f"daily-report {result['report_date']} ({result['timezone']})")
    table.add_column(w["kpi"])
    table.add_column(w["value"], justify="right")
    table.add_row(w["revenue"], money(kpis["revenue"]))
    table.add_row(w["orders"], format_number(kpis["orders"]))
    table.add_row(w["units"], format_number(kpis["units"]))
    table.add_row(w["aov"], money(kpis["aov"]))
    table.add_row(w["vs_day"], format_pct(kpis["change_vs_prev_day_pct"]))
    table.add_row(w["vs_week"], format_pct(kpis["change_vs_prev_week_pct"]))
    cancelled = kpis["cancelled"]
    table.add_row(w["cancelled"], f"{cancelled['count']} ({money(cancelled['amount'])})")
    table.add_row(w["anomaly"], w["anomaly_yes"] if kpis["anomaly"] else w["no"])
    if kpis["top_products"]:
        top = kpis["top_products"][0]
        table.add_row(w["top"], f"{top['product']} ({money(top['revenue'])})")
    return table


def status_words(status: str, locale: str) -> str:
    """A delivery status as a person reads it."""
    w = words(locale)
    return w.get("dry_run_status" if status == "dry_run" else status, status.replace("_", " "))


def deliveries_table(result: dict[str, Any], *, locale: str) -> Table | None:
    """One row per delivery: route, severity, outcome, where it went, the error if any."""
    deliveries = result.get("deliveries") or []
    if not deliveries:
        return None
    w = words(locale)
    with_severity = any(delivery.get("severity") for delivery in deliveries)
    table = Table(title=w["deliveries"])
    table.add_column(w["route"])
    if with_severity:
        table.add_column(w["severity"])
    table.add_column(w["outcome"])
    table.add_column(w["via"])
    table.add_column(w["note"], overflow="fold")
    styles = {"done": "green", "already_done": "yellow", "dry_run": "cyan"}
    for delivery in deliveries:
        status = delivery["status"]
        cells = [delivery.get("channel") or delivery.get("target") or ""]
        if with_severity:
            cells.append(delivery.get("severity") or "")
        cells += [
            Text(status_words(status, locale), style=styles.get(status, "red")),
            delivery.get("via") or "",
            delivery.get("error") or "",
        ]
        table.add_row(*cells)
    return table


def result_view(name: str, result: dict[str, Any], *, currency: str, locale: str) -> list[Any]:
    """What a human reads about a finished run: its figures, its deliveries, its warnings."""
    w = words(locale)
    parts: list[RenderableType] = []
    if result.get("dry_run"):
        parts.append(Text(w["dry_run"], style="bold cyan"))
    if name == "daily-report" and "kpis" in result:
        parts.append(kpi_table(result, currency=currency, locale=locale))
    elif name == "inventory-alert" and "counts" in result:
        parts.append(_inventory_table(result, locale))
    elif name == "form-digest" and "responses" in result:
        parts.append(_form_lines(result, locale))
    elif name == "ticket-creation" and "created" in result:
        parts.append(_ticket_line(result, locale))
    table = deliveries_table(result, locale=locale)
    if table is not None:
        parts.append(table)
    elif not result.get("dry_run"):
        parts.append(Text(w["nothing"]))
    for warning in result.get("warnings") or []:
        parts.append(Text(f"{w['warning']}: {warning}", style="yellow"))
    return parts


def _inventory_table(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    counts = " · ".join(f"{count} {state}" for state, count in result["counts"].items())
    if not result["transitions"]:
        return Text(f"inventory-alert: {counts}")
    table = Table(title=f"inventory-alert: {counts}")
    table.add_column(w["sku"])
    table.add_column(w["items"])
    table.add_column(w["change"])
    colours = {"out": "red", "low": "yellow", "ok": "green"}
    for change in result["transitions"]:
        moved = Text.assemble(
            (str(change["from"]), colours.get(str(change["from"]), "")),
            " -> ",
            (str(change["to"]), colours.get(str(change["to"]), "")),
        )
        table.add_row(str(change["sku"]), str(change.get("name") or ""), moved)
    if result["transitions_total"] > len(result["transitions"]):
        table.caption = f"+{result['transitions_total'] - len(result['transitions'])}"
    return table


def _form_lines(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    if not result["rows"]:
        return Text(f"form-digest: {w['nothing']}")
    window = result["window"]
    line = (
        f"form-digest: {result['responses']} {w['responses']}, {w['rows']} "
        f"{window['first_row']}–{window['last_row']}"
    )
    if result["needs_attention_total"]:
        line += f" · {result['needs_attention_total']} {w['attention']}"
    if result.get("notion_url"):
        line += f"\n{w['notion']}: {result['notion_url']}"
    return Text(line)


def _ticket_line(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    counts = [
        f"{len(result['created'])} {w['created']}",
        f"{len(result['commented'])} {w['commented']}",
        f"{len(result['rejected'])} {w['rejected']}",
        f"{result['unchanged']} {w['unchanged']}",
    ]
    lines = [f"ticket-creation: {' · '.join(counts)}"]
    for issue in result["created"][:10]:
        lines.append(f"  {issue.get('key', '')} {issue.get('summary', '')}".rstrip())
    return Text("\n".join(lines))
