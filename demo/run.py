"""`moltbot demo`: the automations on bundled sample data against the local sandbox."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from moltbot.config.settings import Settings, get_settings
from moltbot.formatting import format_money, format_number, format_pct

if TYPE_CHECKING:
    from flows.daily_report.flow import DailyReportResult
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
    from moltbot.sandbox.blocks import sandbox_email_channel

    SlackIncomingWebhook(url=sandbox.slack_webhook_url(DEMO_WEBHOOK_NAME)).save(
        DEMO_SLACK_BLOCK, overwrite=True
    )
    sandbox_email_channel(sandbox).save(DEMO_EMAIL_BLOCK, overwrite=True)
    return [DEMO_SLACK_BLOCK, DEMO_EMAIL_BLOCK, "outbox"]


def _kpi_table(result: DailyReportResult, settings: Settings) -> Table:
    kpis = result.kpis
    money = lambda value: format_money(value, settings.currency, settings.locale)  # noqa: E731
    table = Table(title=f"daily-report {result.report_date} ({result.timezone})")
    table.add_column("KPI")
    table.add_column("value", justify="right")
    table.add_row("revenue", money(kpis["revenue"]))
    table.add_row("orders", format_number(kpis["orders"]))
    table.add_row("units", format_number(kpis["units"]))
    table.add_row("average order", money(kpis["aov"]))
    table.add_row("vs previous day", format_pct(kpis["change_vs_prev_day_pct"]))
    table.add_row("vs same day last week", format_pct(kpis["change_vs_prev_week_pct"]))
    cancelled = kpis["cancelled"]
    table.add_row("cancelled/refunded", f"{cancelled['count']} ({money(cancelled['amount'])})")
    table.add_row("anomaly", "yes, unusual revenue" if kpis["anomaly"] else "no")
    if kpis["top_products"]:
        top = kpis["top_products"][0]
        table.add_row("top product", f"{top['product']} ({money(top['revenue'])})")
    return table


def _describe_deliveries(
    result: DailyReportResult, sandbox: Any, outbox: Path, console: Console
) -> None:
    where = {
        DEMO_SLACK_BLOCK: f"Slack emulator ({len(sandbox.state.slack.posts)} post(s) received)",
        DEMO_EMAIL_BLOCK: f"SMTP sink ({len(sandbox.smtp.messages)} e-mail(s) received)",
        "outbox": f"{outbox}",
    }
    statuses = {delivery.status for delivery in result.deliveries}
    for delivery in result.deliveries:
        label = {
            "done": "[green]sent[/green]",
            "already_done": "[yellow]already done, skipped[/yellow]",
        }.get(delivery.status, delivery.status)
        console.print(f"  {delivery.channel:<14} {label}  -> {where.get(delivery.channel, '')}")
    if statuses == {"already_done"}:
        console.print(
            "Every delivery was already done (the ledger remembers); nothing was sent again. "
            "Use [bold]moltbot run daily-report --param force=true …[/bold] to send again."
        )


def _word(status: str) -> str:
    """A delivery's outcome in the demo's words."""
    return {"done": "sent", "already_done": "skipped"}.get(status, status.replace("_", " "))


def _counts_text(counts: dict[str, int]) -> str:
    return " · ".join(f"{counts[name]} {name.replace('_', ' ')}" for name in counts)


def _transitions_table(result: InventoryAlertResult, stock: Path, title: str) -> Table:
    from tasks.sources import read_table

    items = read_table(str(stock)).set_index("sku")
    table = Table(title=f"{title}: {_counts_text(result.counts)}")
    for column, justify in (
        ("SKU", "left"),
        ("product", "left"),
        ("change", "left"),
        ("on hand", "right"),
        ("reorder point", "right"),
    ):
        table.add_column(column, justify=justify)
    labels = {"out": "[red]out[/red]", "low": "[yellow]low[/yellow]", "ok": "[green]ok[/green]"}
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


def _describe_inventory_deliveries(result: InventoryAlertResult, console: Console) -> None:
    if not result.deliveries:
        console.print(
            "  No change since the last run: nothing to send (the stored stock states match)."
        )
        return
    by_severity: dict[str, list[str]] = {}
    for delivery in result.deliveries:
        by_severity.setdefault(delivery.severity or "", []).append(
            f"{delivery.channel} {_word(delivery.status)}"
        )
    for severity, outcomes in by_severity.items():
        console.print(f"  {severity:<10} {', '.join(outcomes)}")


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
        if snapshot is None:
            console.print(f"Using sample stock: [bold]{stock}[/bold]", soft_wrap=True)
        else:
            write_sample_inventory(stock, snapshot)
            verb = "Wrote sample stock" if snapshot == 0 else "Changed the stock (a day later)"
            console.print(f"{verb}: [bold]{stock}[/bold]", soft_wrap=True)
        state = inventory_alert(
            source=str(stock),
            sales_source=str(orders),
            channels_by_severity=DEMO_INVENTORY_ROUTES,
            return_state=True,
        )
        result = InventoryAlertResult.model_validate(state.result())
        run = "first run" if snapshot == 0 else "second run" if snapshot else "run"
        title = f"inventory-alert {run}"
        if result.transitions:
            console.print(_transitions_table(result, stock, title))
        else:
            console.print(f"{title}: {_counts_text(result.counts)}")
        if result.reminders_total:
            console.print(f"  {result.reminders_total} item(s) still out: reminded once more")
        _describe_inventory_deliveries(result, console)
    return state


def _describe_form_run(result: FormDigestResult, label: str, console: Console) -> None:
    if not result.rows:
        console.print(
            f"{label}: no new responses since the last digest (sheet row "
            f"{result.watermark['row']}): nothing to send"
        )
        return
    window = result.window
    attention = result.needs_attention
    rows = ", ".join(str(entry["row"]) for entry in attention)
    console.print(
        f"{label}: {result.responses} responses, sheet rows {window['first_row']}–"
        f"{window['last_row']} ({window['start'][:10]}..{window['end'][:10]})"
        + (f" · {len(attention)} need attention (rows {rows})" if attention else "")
    )
    if result.notion_url:
        console.print(f"  Notion page: {result.notion_url}", soft_wrap=True)
    outcomes = ", ".join(f"{d.channel} {_word(d.status)}" for d in result.deliveries)
    console.print(f"  {outcomes}")


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
        sample_form_rows,
        sample_form_sheet,
    )
    from flows.form_digest.flow import FormDigestResult, form_digest
    from flows.form_digest.render import AUTOMATION, stream_of
    from moltbot.sandbox.blocks import SANDBOX_NOTION_BLOCK, SANDBOX_SHEETS_BLOCK, sandbox_blocks
    from moltbot.sandbox.notion import SANDBOX_DIGEST_DATABASE_ID
    from moltbot.state.ledger import Ledger
    from moltbot.state.watermarks import WatermarkStore

    for entry in sandbox_blocks(sandbox):
        if entry.name in (SANDBOX_SHEETS_BLOCK, SANDBOX_NOTION_BLOCK):
            entry.block.save(entry.name, overwrite=True)
    stream = stream_of(SAMPLE_FORM_SPREADSHEET_ID, SAMPLE_FORM_WORKSHEET)
    with Ledger.from_settings(settings) as ledger:
        digested = WatermarkStore(ledger, AUTOMATION).get(stream).position is not None
    sheets = sandbox.state.sheets
    rows = sample_form_sheet(BATCHES if digested else 1)
    sheets.create_spreadsheet(
        SAMPLE_FORM_NAME, {SAMPLE_FORM_WORKSHEET: rows}, spreadsheet_id=SAMPLE_FORM_SPREADSHEET_ID
    )
    console.print(
        f"Seeded the sample form sheet in the Sheets emulator: {len(rows) - 1} responses "
        f"({SAMPLE_FORM_NAME}, worksheet {SAMPLE_FORM_WORKSHEET})"
    )
    labels = (
        ["form-digest run"] if digested else ["form-digest first run", "form-digest second run"]
    )
    state = None
    for number, label in enumerate(labels):
        if number:
            rows = sample_form_sheet(BATCHES)
            sheets.set_values(SAMPLE_FORM_SPREADSHEET_ID, SAMPLE_FORM_WORKSHEET, rows)
            console.print(f"{len(sample_form_rows(1))} new responses arrived in the sheet")
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


def _prefect_ui_hint(flow_run_id: Any) -> str:
    import os

    from prefect.settings import PREFECT_UI_URL

    ui_url = PREFECT_UI_URL.value()
    if os.environ.get("PREFECT_API_URL") and ui_url:
        return f"Prefect UI: this run, its logs and artifacts: {ui_url}/runs/flow-run/{flow_run_id}"
    return (
        "Prefect UI: this demo used a temporary Prefect server, gone now. For a lasting UI run "
        "[bold]uv run prefect server start[/bold] in another terminal, then "
        "[bold]export PREFECT_API_URL=http://127.0.0.1:4200/api[/bold] and run the demo again "
        "(open http://127.0.0.1:4200)."
    )


def run_demo(console: Console) -> int:
    """Run the demo and print its summary; return the exit code."""
    from moltbot.runtime import prepare_process_logging
    from moltbot.sandbox import Sandbox

    settings = get_settings()
    sample, created = ensure_sample_orders(settings)
    console.print(
        f"{'Wrote' if created else 'Using'} sample orders: [bold]{sample}[/bold]", soft_wrap=True
    )
    report_date = last_order_date(sample, settings.timezone)

    from flows.daily_report.flow import DailyReportResult, daily_report
    from flows.daily_report.render import report_file_stem

    prepare_process_logging()
    with Sandbox() as sandbox:
        console.print(
            f"Sandbox running at {sandbox.base_url} (Sheets, Notion, Jira, Slack) "
            f"and SMTP port {sandbox.smtp_port}"
        )
        channels = save_sandbox_channels(sandbox)
        state = daily_report(
            source=str(sample), report_date=report_date, channels=channels, return_state=True
        )
        # state.result() raises the run's own error when it failed.
        result = DailyReportResult.model_validate(state.result())
        console.print(_kpi_table(result, settings))
        console.print("Deliveries:")
        outbox = settings.outbox_dir.resolve()
        _describe_deliveries(result, sandbox, outbox, console)
        stem = report_file_stem(report_date)
        console.print(f"HTML report: {outbox / (stem + '.html')}", soft_wrap=True)
        console.print(f"Chart:       {outbox / (stem + '-revenue.png')}", soft_wrap=True)
        run_inventory_demo(console, settings, sample)
        state = run_form_digest_demo(console, settings, sandbox)
    console.print(_prefect_ui_hint(state.state_details.flow_run_id), soft_wrap=True)
    return 0
