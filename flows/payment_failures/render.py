"""Payment-failures rendering: window alerts and daily summaries as Messages, the run summary."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flows.payment_failures import ENTRY
from flows.payment_failures.plan import AUTOMATION, AlertBatch, Breakdown, DaySummary
from moltbot.formatting import format_money, minor_unit_digits
from moltbot.messages import SLACK_SECTION_LIMIT, Message, slack_sections
from moltbot.state.payments import PaymentRecord
from moltbot.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
# Failures listed one by one in an alert; the counts cover all of them.
LISTED_FAILURES = 10
_UNKNOWN = {"en": "unknown", "ko": "알 수 없음"}


def format_minor(amount: int | None, currency: str | None, locale: str) -> str:
    """A minor-unit amount as people read it: 1999 USD -> `$19.99`, 45000 KRW -> `₩45,000`."""
    if amount is None or not currency:
        return _UNKNOWN.get(locale, "unknown")
    return format_money(amount / 10 ** minor_unit_digits(currency), currency, locale)


def format_rate(rate: float | None, locale: str) -> str:
    """A rate 0..1 as a percentage with one decimal (`12.5%`)."""
    if rate is None:
        return _UNKNOWN.get(locale, "unknown")
    return f"{rate * 100:.1f}%"


def amounts_text(amounts: dict[str, int], locale: str) -> str:
    """`₩90,000 · $19.99` (one total per currency), or `unknown`."""
    if not amounts:
        return _UNKNOWN.get(locale, "unknown")
    return " · ".join(format_minor(total, code, locale) for code, total in amounts.items())


def failure_row(record: PaymentRecord, timezone: str, locale: str) -> dict[str, Any]:
    """One failure as a row of messages and tables (masked customer, formatted amount)."""
    local = record.occurred_at.astimezone(ZoneInfo(timezone))
    return {
        "time": local.strftime("%H:%M:%S"),
        "date": local.date().isoformat(),
        "customer": record.customer_label or _UNKNOWN.get(locale, "unknown"),
        "amount": format_minor(record.amount_minor, record.currency, locale),
        "reason": record.reason or "unknown",
        "provider": record.provider,
    }


def build_alert_message(batch: AlertBatch, *, timezone: str, locale: str) -> Message:
    """The alert of one closed window: count, amounts per currency, reasons, providers, and the
    first failures (customers masked)."""
    zone = ZoneInfo(timezone)
    context = {
        "start": batch.start.astimezone(zone),
        "end": batch.end.astimezone(zone),
        "count": batch.count,
        "amounts": amounts_text(batch.amounts, locale),
        "reasons": batch.reasons,
        "providers": batch.providers,
        "customers": batch.customers,
        "late": batch.late,
        "rows": [failure_row(r, timezone, locale) for r in batch.failures[:LISTED_FAILURES]],
        "more": max(batch.count - LISTED_FAILURES, 0),
        "timezone": timezone,
    }
    return _message(
        "alert",
        batch.key,
        "warning",
        context,
        locale,
        stem=f"{AUTOMATION}-{batch.start:%Y%m%dT%H%MZ}",
    )


def build_summary_message(summary: DaySummary, *, timezone: str, locale: str) -> Message:
    """The daily summary: failures, attempts and rates by reason and by provider."""
    context = {
        "day": summary.day,
        "failures": summary.failures,
        "attempts": summary.attempts,
        "rates_known": summary.rates_known,
        "rate": format_rate(summary.rate, locale),
        "amounts": amounts_text(summary.amounts, locale),
        "customers": summary.customers,
        "by_reason": [_breakdown(b, locale) for b in summary.by_reason],
        "by_provider": [_breakdown(b, locale) for b in summary.by_provider],
        "timezone": timezone,
    }
    return _message(
        "summary",
        summary.key,
        "info",
        context,
        locale,
        stem=f"{AUTOMATION}-summary-{summary.day.isoformat()}",
    )


def _breakdown(item: Breakdown, locale: str) -> dict[str, Any]:
    return {
        "name": item.name,
        "failures": item.failures,
        "attempts": item.attempts,
        "rate": format_rate(item.rate, locale),
    }


# The rule (`flows.payment_failures.RULES`) of each kind of message.
RULES = {"alert": "window-alert", "summary": "daily-summary"}


def _message(
    kind: str, key: str, severity: Any, context: dict[str, Any], locale: str, *, stem: str
) -> Message:
    title = render_template(TEMPLATES, locale, f"{kind}_title.txt.j2", **context).strip()
    markdown = render_template(TEMPLATES, locale, f"{kind}.md.j2", title=title, **context)
    lines = render_template(TEMPLATES, locale, f"{kind}.mrkdwn.j2", **context)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        *slack_sections([line[:SLACK_SECTION_LIMIT] for line in lines.splitlines() if line]),
    ]
    return Message(
        key=key,
        rule=ENTRY.rule(RULES[kind]),
        automation=AUTOMATION,
        severity=severity,
        title=title,
        text=markdown,
        markdown=markdown,
        slack_blocks=blocks,
        file_stem=stem,
    )


# Words of the run summary that come from codes (outcomes, severities), per locale.
_WORDS = {
    "ko": {
        "alert": "알림",
        "summary": "일일 요약",
        "done": "완료",
        "already_done": "이미 보냄",
        "dry_run": "시험 실행",
        "failed": "실패",
        "dead": "전달 불가",
        "created": "생성됨",
        "commented": "댓글 작성",
        "unchanged": "이미 처리됨",
        "would_create": "생성 예정",
        "in_progress": "다른 실행이 처리 중",
        "due": "처리 예정",
    }
}


def run_summary(result: dict[str, Any], *, locale: str, timezone: str, now: datetime) -> str:
    """The run's markdown summary artifact (codes such as `done` in the locale's words)."""
    words = _WORDS.get(locale, {})

    def word(code: Any) -> Any:
        return words.get(code, code) if isinstance(code, str) else code

    shown = {
        **result,
        "tickets": [{**t, "status": word(t["status"])} for t in result["tickets"]],
        "deliveries": [
            {**d, "severity": word(d.get("severity")), "status": word(d["status"])}
            for d in result["deliveries"]
        ],
    }
    return render_template(
        TEMPLATES,
        locale,
        "run_summary.md.j2",
        result=shown,
        checked=now.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M"),
        timezone=timezone,
    )
