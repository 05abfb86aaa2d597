"""`moltbot demo`: the automations on bundled sample data against the local sandbox."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from moltbot.config.settings import Settings, get_settings
from moltbot.effects.report import Delivery
from moltbot.formatting import format_number

if TYPE_CHECKING:
    from flows.form_digest.flow import FormDigestResult
    from flows.inventory_alert.flow import InventoryAlertResult

DEMO_SLACK_BLOCK = "demo-slack"
DEMO_EMAIL_BLOCK = "demo-email"
DEMO_WEBHOOK_NAME = "demo"
# Where the demo's stock alerts go: stock-outs everywhere, low stock and recoveries to chat and
# the outbox only, as a shop would route them.
DEMO_INVENTORY_ROUTES = {
    "out": [DEMO_SLACK_BLOCK, DEMO_EMAIL_BLOCK, "outbox"],
    "low": [DEMO_SLACK_BLOCK, "outbox"],
}


def sample_orders_path(settings: Settings) -> Path:
    """Where the demo keeps its sample orders."""
    return settings.home / "sample" / "orders.csv"


def ensure_sample_orders(settings: Settings) -> tuple[Path, bool]:
    """Write the sample orders under MOLTBOT_HOME unless present; return (path, created)."""
    from demo.sample_orders import write_sample_orders
    from flows.daily_report.flow import yesterday

    path = sample_orders_path(settings)
    if path.is_file():
        return path, False
    write_sample_orders(path, end_date=yesterday(settings.timezone), timezone=settings.timezone)
    return path, True


def sample_inventory_path(settings: Settings) -> Path:
    """Where the demo keeps its sample stock list (the inventory-alert source)."""
    return settings.home / "sample" / "inventory.csv"


def last_order_date(path: Path, timezone: str) -> date:
    """The last local date that has orders in the sample file."""
    from flows.shared.orders import normalize_orders
    from tasks.sources import read_table

    orders = normalize_orders(read_table(str(path)), source_label=path.name, timezone=timezone)
    return max(orders["local_date"])


def save_sandbox_channels(sandbox: Any) -> list[str]:
    """Save (or update) channel blocks pointing at this sandbox; return their names."""
    from blocks import SlackIncomingWebhook
    from moltbot.audit import save_block
    from moltbot.sandbox.blocks import sandbox_email_channel

    save_block(
        SlackIncomingWebhook(url=sandbox.slack_webhook_url(DEMO_WEBHOOK_NAME)), DEMO_SLACK_BLOCK
    )
    save_block(sandbox_email_channel(sandbox), DEMO_EMAIL_BLOCK)
    return [DEMO_SLACK_BLOCK, DEMO_EMAIL_BLOCK, "outbox"]


# Everything the demo says, in English and Korean (`--locale ko`).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "intro": "Sample data in {sample} · sandbox (Sheets, Notion, Jira, Slack, SMTP) at "
        "{sandbox} · Prefect UI {ui}",
        "html_report": " (HTML report: {path})",
        "nothing_to_send": "nothing to send",
        "sent": "sent",
        "skipped": "skipped",
        "first_run": "inventory-alert, first run",
        "day_later": "inventory-alert, a day later",
        "run": "inventory-alert, run",
        "no_change": "  no change since the last run: nothing to send",
        "reminded": "  {count} item(s) still out: reminded once more",
        "columns": "SKU|product|change|on hand|reorder point",
        "form": "form-digest",
        "form_more": "form-digest, 6 more answers",
        "form_nothing": "{label}: no new responses since the last digest: nothing to send",
        "form_line": "{label}: {responses} responses (sheet rows {first}–{last})",
        "attention": ", {count} need attention",
        "notion": " -> Notion page {url}",
        "webhook_duplicate": "webhook: the signed payment.failed event was already received "
        "(gateway: 200 duplicate): no new run, no second ticket",
        "webhook": "webhook: signed payment.failed -> gateway 202 -> ticket-creation run -> "
        "Jira {keys}",
        "no_issue": "no issue",
        "inbox": "What the sandbox received (Slack, e-mail, Notion, Jira, messengers): {path}",
        "report_run": "The daily-report run in the Prefect UI: {url}",
        "again": "Run the demo again: the ledger remembers, nothing is sent twice.",
        "ok": "ok",
        "low": "low",
        "out": "out",
        "at_risk": "at risk",
        "recovered": "recovered",
        "reminder": "reminder",
        "down": "down",
        "fell_back": "{first} refused -> {via}",
        "health_line": "service-health: shop and api checked {checks} times, api switched off for "
        "3 checks -> ",
        "health_quiet": "service-health: {services} services checked, no change since the last "
        "check: nothing to send",
        "reconcile_line": "reconcile: {expected} items that should have produced an effect, "
        "{omissions} omissions",
        "spike_line": "error-spike: sample log, {lines} new lines, {errors} errors -> "
        "{spikes} change(s): {sent}",
        "payments_duplicate": "payment-failures: the {events} signed Stripe failures were "
        "already received (gateway: 200 duplicate) and their window alerted: nothing new",
        "payments_line": "payment-failures: {accepted} signed Stripe failures of one customer "
        "accepted -> Jira {tickets} · 5-minute alert: {sent}",
    },
    "ko": {
        "intro": "샘플 데이터 {sample} · 샌드박스(Sheets, Notion, Jira, Slack, SMTP) {sandbox} "
        "· Prefect UI {ui}",
        "html_report": " (HTML 보고서: {path})",
        "nothing_to_send": "보낼 것 없음",
        "sent": "보냄",
        "skipped": "이미 보냄, 건너뜀",
        "first_run": "inventory-alert 첫 실행",
        "day_later": "inventory-alert 하루 뒤",
        "run": "inventory-alert 실행",
        "no_change": "  지난 실행 이후 바뀐 품목이 없어 보낼 것이 없습니다",
        "reminded": "  여전히 품절인 품목 {count}개: 다시 알림",
        "columns": "SKU|상품|변화|재고|재주문점",
        "form": "form-digest",
        "form_more": "form-digest, 응답 6건 추가 후",
        "form_nothing": "{label}: 지난 요약 이후 새 응답이 없어 보낼 것이 없습니다",
        "form_line": "{label}: 응답 {responses}건 (시트 {first}–{last}행)",
        "attention": ", 확인 필요 {count}건",
        "notion": " -> Notion 페이지 {url}",
        "webhook_duplicate": "웹훅: 서명된 payment.failed 이벤트는 이미 받았습니다 "
        "(게이트웨이: 200 duplicate): 새 실행도, 두 번째 티켓도 없습니다",
        "webhook": "웹훅: 서명된 payment.failed -> 게이트웨이 202 -> ticket-creation 실행 -> "
        "Jira {keys}",
        "no_issue": "이슈 없음",
        "inbox": "샌드박스가 받은 것(Slack, 메일, Notion, Jira, 메신저): {path}",
        "report_run": "Prefect UI의 daily-report 실행: {url}",
        "again": "데모를 다시 실행해 보세요: 원장이 기억하므로 아무것도 두 번 보내지 않습니다.",
        "ok": "정상",
        "low": "부족",
        "out": "품절",
        "at_risk": "위험",
        "recovered": "회복",
        "reminder": "재알림",
        "down": "다운",
        "fell_back": "{first} 거부 -> {via}",
        "health_line": "service-health: shop, api를 {checks}번 점검, api를 3번 연속 끔 -> ",
        "health_quiet": "service-health: 서비스 {services}개 점검, 지난 점검 이후 변화가 없어 "
        "보낼 것이 없습니다",
        "reconcile_line": "reconcile: 효과가 있어야 할 항목 {expected}건, 누락 {omissions}건",
        "spike_line": "error-spike: 샘플 로그 새 줄 {lines}개, 오류 {errors}건 -> 변화 {spikes}건: "
        "{sent}",
        "payments_duplicate": "payment-failures: 서명된 Stripe 결제 실패 {events}건은 이미 "
        "받았고(게이트웨이: 200 duplicate) 해당 구간 알림도 보냈습니다: 새로운 것 없음",
        "payments_line": "payment-failures: 한 고객의 서명된 Stripe 결제 실패 {accepted}건 접수 "
        "-> Jira {tickets} · 5분 알림: {sent}",
    },
}


def text(name: str, **values: Any) -> str:
    """The demo's text `name` in `MOLTBOT_LOCALE`, filled with `values`."""
    from moltbot.i18n import in_locale

    return in_locale(TEXTS)[name].format(**values)


def _sent_line(what: str, deliveries: list[Any]) -> str:
    """`daily-report: demo-slack sent, demo-email sent, outbox sent` in one line."""
    outcomes = ", ".join(f"{d.channel} {_word(d.status)}" for d in deliveries)
    return f"{what}: {outcomes or text('nothing_to_send')}"


def _word(status: str) -> str:
    """A delivery's outcome in the demo's words."""
    words = {"done": "sent", "already_done": "skipped"}
    return text(words[status]) if status in words else status.replace("_", " ")


def _state(name: str) -> str:
    return text(name) if name in TEXTS["en"] else name.replace("_", " ")


def _counts_text(counts: dict[str, int]) -> str:
    return " · ".join(f"{counts[name]} {_state(name)}" for name in counts)


def _transitions_table(result: InventoryAlertResult, stock: Path, title: str) -> Table:
    from tasks.sources import read_table

    items = read_table(str(stock)).set_index("sku")
    table = Table(title=f"{title}: {_counts_text(result.counts)}")
    justify = ("left", "left", "left", "right", "right")
    for column, side in zip(text("columns").split("|"), justify, strict=True):
        table.add_column(column, justify=side)  # type: ignore[arg-type]
    colours = {"out": "red", "low": "yellow", "ok": "green"}
    labels = {state: f"[{colour}]{_state(state)}[/{colour}]" for state, colour in colours.items()}
    for change in result.transitions:
        item = items.loc[change["sku"]]
        table.add_row(
            change["sku"],
            str(item["name"]),
            f"{labels[change['from']]} -> {labels[change['to']]}",
            format_number(float(item["on_hand"])),
            format_number(float(item["reorder_point"])),
        )
    return table


def _inventory_line(result: InventoryAlertResult) -> str:
    if not result.deliveries:
        return text("no_change")
    by_severity: dict[str, list[str]] = {}
    for delivery in result.deliveries:
        by_severity.setdefault(delivery.severity or "", []).append(
            f"{delivery.channel} {_word(delivery.status)}"
        )
    return "  " + " · ".join(
        f"{_state(severity)}: {', '.join(outs)}" for severity, outs in by_severity.items()
    )


def run_inventory_demo(console: Console, settings: Settings, orders: Path) -> Any:
    """Run inventory-alert on the sample stock; return the last flow run's state.

    The first time, it runs on the first snapshot (every item is new, so the low and out ones
    alert), then changes the stock and runs again (transitions and recoveries). Later demos
    find the stock file in place and run once: no change, nothing sent.
    """
    from demo.sample_inventory import SNAPSHOTS, write_sample_inventory
    from flows.inventory_alert.flow import InventoryAlertResult, inventory_alert

    stock = sample_inventory_path(settings)
    snapshots: list[int | None] = [None] if stock.is_file() else list(range(SNAPSHOTS))
    state = None
    for snapshot in snapshots:
        if snapshot is not None:
            write_sample_inventory(stock, snapshot)
        with demo_tags("inventory-alert"):
            state = inventory_alert(
                source=str(stock),
                sales_source=str(orders),
                channels_by_severity=DEMO_INVENTORY_ROUTES,
                return_state=True,
            )
        result = InventoryAlertResult.model_validate(state.result())
        title = text("first_run" if snapshot == 0 else "day_later" if snapshot else "run")
        if result.transitions:
            console.print(_transitions_table(result, stock, title))
        else:
            say(console, f"{title}: {_counts_text(result.counts)}")
        if result.reminders_total:
            say(console, text("reminded", count=result.reminders_total))
        say(console, _inventory_line(result))
    return state


def _describe_form_run(result: FormDigestResult, label: str, console: Console) -> None:
    if not result.rows:
        say(console, text("form_nothing", label=label))
        return
    window = result.window
    attention = len(result.needs_attention)
    line = text(
        "form_line",
        label=label,
        responses=result.responses,
        first=window["first_row"],
        last=window["last_row"],
    )
    if attention:
        line += text("attention", count=attention)
    if result.notion_page_id:
        # The sandbox stops with the demo: link the page's static copy, saved before it stops.
        from moltbot.sandbox.inbox import static_notion_name

        page = get_settings().home / "inbox" / static_notion_name(result.notion_page_id)
        line += text("notion", url=page)
    say(console, line)
    say(console, "  " + ", ".join(f"{d.channel} {_word(d.status)}" for d in result.deliveries))


def run_form_digest_demo(console: Console, settings: Settings, sandbox: Any) -> Any:
    """Seed the sample form sheet in the sandbox and digest it; return the last flow run's state.

    The first time, it digests the first 24 responses, then 6 more arrive and a second run
    digests only those. The watermark stays in the ledger, so a later demo (a fresh sandbox
    seeded with the same responses) finds nothing new and sends nothing.
    """
    from demo.sample_forms import (
        BATCHES,
        NPS_COLUMN,
        PERSONAL_COLUMNS,
        REQUIRED_COLUMNS,
        SAMPLE_FORM_NAME,
        SAMPLE_FORM_SPREADSHEET_ID,
        SAMPLE_FORM_WORKSHEET,
        sample_form_sheet,
    )
    from flows.form_digest.flow import FormDigestResult, form_digest
    from flows.form_digest.render import AUTOMATION, stream_of
    from moltbot.sandbox.blocks import SANDBOX_NOTION_BLOCK, SANDBOX_SHEETS_BLOCK
    from moltbot.sandbox.notion import SANDBOX_DIGEST_DATABASE_ID
    from moltbot.state.ledger import Ledger
    from moltbot.state.watermarks import WatermarkStore

    stream = stream_of(SAMPLE_FORM_SPREADSHEET_ID, SAMPLE_FORM_WORKSHEET)
    with Ledger.from_settings(settings) as ledger:
        digested = WatermarkStore(ledger, AUTOMATION).get(stream).position is not None
    sheets = sandbox.state.sheets
    rows = sample_form_sheet(BATCHES if digested else 1)
    sheets.create_spreadsheet(
        SAMPLE_FORM_NAME, {SAMPLE_FORM_WORKSHEET: rows}, spreadsheet_id=SAMPLE_FORM_SPREADSHEET_ID
    )
    labels = [text("form")] if digested else [text("form"), text("form_more")]
    state = None
    for number, label in enumerate(labels):
        if number:
            sheets.set_values(
                SAMPLE_FORM_SPREADSHEET_ID, SAMPLE_FORM_WORKSHEET, sample_form_sheet(BATCHES)
            )
        with demo_tags("form-digest"):
            state = form_digest(
                sheets_block=SANDBOX_SHEETS_BLOCK,
                spreadsheet_id=SAMPLE_FORM_SPREADSHEET_ID,
                worksheet=SAMPLE_FORM_WORKSHEET,
                form_name=SAMPLE_FORM_NAME,
                channels=[DEMO_SLACK_BLOCK, DEMO_EMAIL_BLOCK, "outbox"],
                notion_block=SANDBOX_NOTION_BLOCK,
                notion_database_id=SANDBOX_DIGEST_DATABASE_ID,
                required_columns=list(REQUIRED_COLUMNS),
                nps_column=NPS_COLUMN,
                skip_columns=list(PERSONAL_COLUMNS),
                return_state=True,
            )
        _describe_form_run(FormDigestResult.model_validate(state.result()), label, console)
    return state


def run_ticket_demo(console: Console, settings: Settings) -> None:
    """A signed payment webhook through the real gateway to a ticket-creation run and Jira."""
    from demo.webhook import run_webhook_demo
    from moltbot.sandbox.blocks import SANDBOX_JIRA_BLOCK

    with demo_tags("ticket-creation"):
        outcome = run_webhook_demo(settings.resolved_ledger_url, SANDBOX_JIRA_BLOCK)
    if outcome.answer == "duplicate":
        say(console, text("webhook_duplicate"))
        return
    say(console, text("webhook", keys=", ".join(outcome.issue_keys) or text("no_issue")))


def demo_tags(automation: str) -> Any:
    """The tags of the demo's runs (`demo`, the automation's name)."""
    from prefect import tags

    from moltbot.runlabels import run_tags

    return tags(*run_tags(automation, origin="demo"))


def say(console: Console, text: str) -> None:
    """One line of plain text (paths and names are not Rich markup)."""
    console.print(text, markup=False, soft_wrap=True, highlight=False)


def run_demo(console: Console, ui_url: str) -> int:
    """Run the demo and print its summary; return the exit code.

    Args:
        console: where to print.
        ui_url: the Prefect UI of the server the runs are recorded by.
    """
    from demo.monitoring import (
        run_error_spike_demo,
        run_payments_demo,
        run_reconcile_demo,
        run_service_health_demo,
    )
    from flows.daily_report.flow import daily_report
    from flows.daily_report.render import report_file_stem
    from moltbot.audit import record_blocks_saved
    from moltbot.resultview import kpi_table
    from moltbot.sandbox import Sandbox
    from moltbot.sandbox.blocks import save_sandbox_blocks
    from moltbot.sandbox.inbox import save_static_inbox

    settings = get_settings()
    sample, _ = ensure_sample_orders(settings)
    report_date = last_order_date(sample, settings.timezone)
    with Sandbox() as sandbox:
        say(console, text("intro", sample=sample.parent, sandbox=sandbox.base_url, ui=ui_url))
        channels = save_sandbox_channels(sandbox)
        record_blocks_saved((entry.block, entry.name) for entry in save_sandbox_blocks(sandbox))
        with demo_tags("daily-report"):
            state = daily_report(
                source=str(sample), report_date=report_date, channels=channels, return_state=True
            )
        report_run = state.state_details.flow_run_id
        # state.result() raises the run's own error when it failed.
        result = state.result()
        console.print(kpi_table(result, currency=settings.currency, locale=settings.locale))
        report = settings.outbox_dir.resolve() / f"{report_file_stem(report_date)}.html"
        deliveries = [Delivery.model_validate(d) for d in result["deliveries"]]
        say(console, _sent_line("daily-report", deliveries) + text("html_report", path=report))
        run_inventory_demo(console, settings, sample)
        run_form_digest_demo(console, settings, sandbox)
        run_ticket_demo(console, settings)
        run_payments_demo(console, settings, channels)
        run_error_spike_demo(console, settings, channels)
        run_service_health_demo(console, settings, sandbox, channels)
        run_reconcile_demo(console)
        inbox = save_static_inbox(sandbox, settings.home / "inbox")
    say(console, text("inbox", path=inbox))
    say(console, text("report_run", url=f"{ui_url}/runs/flow-run/{report_run}"))
    say(console, text("again"))
    return 0
