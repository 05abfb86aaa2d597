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
        "queued": "held for quiet hours",
        "digests": "digests of held messages",
        "released": "held messages delivered",
        "escalations": "escalation steps",
        "service": "service",
        "state": "state",
        "status": "HTTP status",
        "latency": "latency (ms)",
        "failures": "failures in a row",
        "reason": "reason",
        "source": "source",
        "window_errors": "errors, last window",
        "current_errors": "errors, this window",
        "baseline": "baseline",
        "threshold": "threshold",
        "spiking": "spiking",
        "yes": "yes",
        "lines_read": "new lines read",
        "events": "events read",
        "recorded": "recorded",
        "duplicates": "duplicates",
        "alerts": "window alerts",
        "summaries": "daily summaries",
        "tickets": "tickets",
        "automation": "automation",
        "expected": "expected",
        "omissions": "omissions",
        "rate": "omission rate",
        "new": "new",
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
        "queued": "방해 금지 시간이라 보류",
        "digests": "보류 메시지 요약",
        "released": "전달된 보류 메시지",
        "escalations": "에스컬레이션 단계",
        "service": "서비스",
        "state": "상태",
        "status": "HTTP 상태",
        "latency": "응답 시간(ms)",
        "failures": "연속 실패",
        "reason": "사유",
        "source": "소스",
        "window_errors": "직전 구간 오류",
        "current_errors": "현재 구간 오류",
        "baseline": "기준값",
        "threshold": "임계값",
        "spiking": "급증 중",
        "yes": "예",
        "lines_read": "새로 읽은 줄",
        "events": "읽은 이벤트",
        "recorded": "기록",
        "duplicates": "중복",
        "alerts": "구간 알림",
        "summaries": "일일 요약",
        "tickets": "티켓",
        "automation": "자동화",
        "expected": "대상",
        "omissions": "누락",
        "rate": "누락률",
        "new": "새 누락",
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
    styles = {"done": "green", "already_done": "yellow", "queued": "yellow", "dry_run": "cyan"}
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
    elif name == "service-health" and "checks" in result:
        parts.append(_health_table(result, locale))
    elif name == "error-spike" and "sources" in result:
        parts.append(_spike_table(result, locale))
    elif name == "payment-failures" and "recorded" in result:
        parts.append(_payments_line(result, locale))
    elif name == "reconcile" and "omission_rate" in result:
        parts.append(_omissions_table(result, locale))
    elif name == "on-call" and "escalations" in result:
        parts.append(_on_call_line(result, locale))
    elif name == "health" and "changes" in result:
        parts.append(_health_line(result, locale))
    elif name == "metrics-weekly" and "metrics" in result:
        parts.append(_metrics_line(result))
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


_STATE_STYLES = {"UP": "green", "DEGRADED": "yellow", "DOWN": "red"}


def _health_table(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    counts = " · ".join(f"{count} {state}" for state, count in result["counts"].items() if count)
    table = Table(title=f"service-health: {counts}")
    for column in ("service", "state", "status", "latency", "failures", "reason"):
        table.add_column(w[column])
    for check in result["checks"]:
        table.add_row(
            str(check["service"]),
            Text(str(check["state"]), style=_STATE_STYLES.get(str(check["state"]), "")),
            "" if check.get("status_code") is None else str(check["status_code"]),
            "" if check.get("latency_ms") is None else format_number(check["latency_ms"]),
            str(check.get("failures") or 0),
            str(check.get("reason") or ""),
        )
    return table


def _spike_table(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    read = result.get("read") or {}
    table = Table(title=f"error-spike: {format_number(read.get('lines', 0))} {w['lines_read']}")
    for column in ("source", "window_errors", "current_errors", "baseline", "threshold"):
        table.add_column(w[column], justify="left" if column == "source" else "right")
    table.add_column(w["spiking"])
    for source in result["sources"]:
        table.add_row(
            str(source["source"]),
            format_number(source.get("previous_count") or 0),
            format_number(source.get("current_count") or 0),
            "" if source.get("baseline") is None else format_number(source["baseline"], decimals=1),
            "" if source.get("threshold") is None else format_number(source["threshold"]),
            Text(w["yes"], style="red") if source.get("spiking") else w["no"],
        )
    return table


def _payments_line(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    counts = [
        f"{result['events_read']} {w['events']}",
        f"{result['recorded']} {w['recorded']}",
        f"{result['duplicates']} {w['duplicates']}",
        f"{len(result['rejected'])} {w['rejected']}",
        f"{len(result['alerts'])} {w['alerts']}",
        f"{len(result['summaries'])} {w['summaries']}",
        f"{len(result['tickets'])} {w['tickets']}",
    ]
    return Text(f"payment-failures: {' · '.join(counts)}")


def _on_call_line(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    counts = [
        f"{len(result['digests'])} {w['digests']}",
        f"{result['released']} {w['released']}",
        f"{len(result['escalations'])} {w['escalations']}",
    ]
    return Text(f"on-call: {' · '.join(counts)}")


def _health_line(result: dict[str, Any], locale: str) -> RenderableType:
    from moltbot.i18n import cli_text

    [summary] = cli_text("doctor_summary")
    counts, changed = result["counts"], len(result["changes"])
    line = summary.format(failed=counts["fail"], warned=counts["warn"], ok=counts["ok"])
    news = f"변경 {changed}건" if locale == "ko" else f"{changed} changed"
    return Text(f"health: {line} · {news}")


def _omissions_table(result: dict[str, Any], locale: str) -> RenderableType:
    w = words(locale)
    title = (
        f"reconcile: {result['omissions_total']} {w['omissions']} · "
        f"{result['new_omissions']} {w['new']}"
    )
    table = Table(title=title)
    table.add_column(w["automation"])
    for column in ("expected", "omissions", "rate"):
        table.add_column(w[column], justify="right")
    for automation, rate in result["omission_rate"].items():
        style = "red" if rate["omissions"] else ""
        table.add_row(
            automation,
            format_number(rate["expected"]),
            Text(format_number(rate["omissions"]), style=style),
            f"{rate['rate'] * 100:.1f}%",
        )
    return table


def _metrics_line(result: dict[str, Any]) -> RenderableType:
    from moltbot.i18n import cli_text
    from moltbot.metrics import format_share

    metrics = result["metrics"]
    [artifact] = result["artifacts"] or [{"key": None}]
    [line] = cli_text("metrics_published")
    return Text(
        line.format(
            count=len(metrics["automations"]),
            runs=metrics["totals"]["runs"],
            success=format_share(metrics["totals"]["success_rate"]),
            key=artifact["key"] or "-",
        )
    )
