"""The `moltbot` command line: list, show, run, demo, server, sandbox, serve, deploy, blocks…"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from moltbot import __version__
from moltbot.errors import DeliveryFailed, InputError
from moltbot.parameters import check_params, parse_params
from moltbot.registry import automations, get_automation

__all__ = ["app", "main", "parse_params", "run_automation"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
SANDBOX_PORT, GATEWAY_PORT, SMTP_PORT = 8765, 8787, 8025

app = typer.Typer(
    name="moltbot",
    help="Business-automation bots on Prefect: observable, never sent twice, no secret in a log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Human output goes to stdout; `--json` output is printed with print() and nothing else.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(reason: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print a one-line reason on stderr and return the exit to raise."""
    # The reason is plain text: a `[deployments.x]` in it must not be read as Rich markup.
    err_console.print(f"[red]error:[/red] {escape(reason)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def say(text: str) -> None:
    """Print a line of plain text (no Rich markup is read from it)."""
    console.print(text, markup=False, soft_wrap=True, highlight=False)


def connect_prefect() -> str:
    """Point this process at the Prefect API, starting the local background server if needed.

    Raises:
        typer.Exit: the local server cannot start (one line: why, what to do).
    """
    from moltbot.config.settings import get_settings
    from moltbot.localserver import ServerError, connect

    try:
        with err_console.status("Prefect server…", spinner="dots") as status:
            return connect(get_settings().home, on_start=lambda text: status.update(text))
    except ServerError as exc:
        raise fail(str(exc), EXIT_FAILED) from None


def _version(value: bool) -> None:
    if value:
        print(f"moltbot {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Annotated[
        Path | None, typer.Option(help="State folder (MOLTBOT_HOME); default ./.moltbot.")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA timezone (MOLTBOT_TIMEZONE); default Asia/Seoul.")
    ] = None,
    locale: Annotated[
        str | None, typer.Option(help="Message language, en or ko (MOLTBOT_LOCALE).")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """moltbot: business automations on Prefect 3."""
    # CLI values win over environment and moltbot.toml: pass them on as environment so every
    # settings read in this process (flows and tasks included) sees them.
    for name, value in (("HOME", home), ("TIMEZONE", timezone), ("LOCALE", locale)):
        if value is not None:
            os.environ[f"MOLTBOT_{name}"] = str(value)
    from pydantic import ValidationError

    from moltbot.config.settings import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise fail(f"bad settings: {problems}") from None


@app.command("list")
def list_automations(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """List the automations moltbot ships."""
    if as_json:
        print(
            json.dumps([automation.as_dict() for automation in automations()], ensure_ascii=False)
        )
        return
    from rich.table import Table

    from moltbot.config.settings import get_settings
    from moltbot.describe import schedule_words

    settings = get_settings()
    from moltbot.i18n import cli_text

    table = Table(*cli_text("list_columns"))
    for automation in automations():
        table.add_row(
            automation.name,
            automation.description,
            schedule_words(automation.default_schedule, settings.timezone, settings.locale),
        )
    console.print(table)
    say(cli_text("list_hint")[0])


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Automation name (see `moltbot list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show an automation: its parameters, schedule, routes and an example command."""
    from moltbot.describe import describe_automation, render_description

    try:
        description = describe_automation(get_automation(name))
    except InputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(description, ensure_ascii=False, default=str))
        return
    for part in render_description(description):
        console.print(part)


def run_automation(
    name: str, params: dict[str, Any], *, origin: str = "cli", run_ids: list[str] | None = None
) -> dict[str, Any]:
    """Run automation `name` with `params` in this process and return its result.

    Args:
        name: the automation.
        params: its parameters (checked here).
        origin: what started the run, as a tag (`cli`, `demo`).
        run_ids: the flow run's id is appended here, failed or not (for its UI link).

    Raises:
        InputError: unknown automation, unknown or invalid parameters, or bad input data.
        DeliveryFailed: the run finished but some deliveries failed.
    """
    automation = get_automation(name)
    flow = automation.load_flow()
    checked = check_params(automation, params)
    from prefect import tags

    from moltbot.runlabels import run_tags

    with tags(*run_tags(name, dry_run=bool(checked.get("dry_run")), origin=origin)):
        state = flow(**checked, return_state=True)
    if run_ids is not None:
        run_ids.append(str(state.state_details.flow_run_id))
    # The run's own error (bad input, a failed delivery) is raised here.
    return state.result()


@contextlib.contextmanager
def progress(verbose: bool) -> Iterator[Path]:
    """A progress line while a command runs flows; Prefect's INFO logs go to the log file."""
    from moltbot.config.settings import get_settings
    from moltbot.runtime import quiet_console

    log_file = get_settings().home / "logs" / "moltbot.log"
    with console.status("starting…", spinner="dots") as status:
        quiet_console(log_file, verbose=verbose, on_step=lambda step: status.update(step))
        yield log_file


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Automation name (see `moltbot list`).")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="key=value (JSON values parsed); see `moltbot show NAME`."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Compute and show what would go out; send and record nothing."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's logs on the console too.")
    ] = False,
) -> None:
    """Run one automation now, in this process (its run is recorded by the Prefect server)."""
    try:
        automation = get_automation(name)
        params = parse_params(param or [])
        if dry_run:
            params["dry_run"] = True
        check_params(automation, params)
    except InputError as exc:
        raise fail(str(exc)) from None
    api_url = connect_prefect()
    run_ids: list[str] = []
    log_file = None
    try:
        with progress(verbose) as log_file:
            result = run_automation(name, params, run_ids=run_ids)
    except InputError as exc:
        raise fail(str(exc)) from None
    except DeliveryFailed as exc:
        _print_result(name, exc.result, as_json)
        if not as_json:
            say(_run_footer(api_url, run_ids, log_file))
        raise fail(f"{name}: {exc}", EXIT_FAILED) from None
    except Exception as exc:
        from moltbot.masking import mask_text

        raise fail(
            mask_text(f"{name} failed: {type(exc).__name__}: {exc} (log: {log_file})"),
            EXIT_FAILED,
        ) from None
    _print_result(name, result, as_json)
    if not as_json:
        say(_run_footer(api_url, run_ids, log_file))


def _run_footer(api_url: str, run_ids: list[str], log_file: Path | None) -> str:
    from moltbot.i18n import cli_text

    return cli_text("run_footer")[0].format(url=_run_url(api_url, run_ids), log=log_file)


def _run_url(api_url: str, run_ids: list[str]) -> str:
    from moltbot.localserver import ui_url

    base = ui_url(api_url)
    return f"{base}/runs/flow-run/{run_ids[-1]}" if run_ids else f"{base}/runs"


def _print_result(name: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    from moltbot.config.settings import get_settings
    from moltbot.resultview import result_view

    settings = get_settings()
    for part in result_view(name, result, currency=settings.currency, locale=settings.locale):
        console.print(part)
    if result.get("dry_run"):
        from moltbot.effects.preview import preview_lines, result_outcomes

        # Lines hold literal brackets ("[결제 문의] …"): never read as Rich markup.
        for line in preview_lines(result_outcomes(result)):
            say(line)


@app.command("demo")
def demo(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's logs on the console too.")
    ] = False,
) -> None:
    """Run the automations on bundled sample data against the local sandbox (no accounts)."""
    from prefect.settings import temporary_settings

    from demo.run import run_demo
    from moltbot.localserver import ui_url
    from moltbot.runtime import one_prefect_client

    api_url = connect_prefect()
    log_file = None
    try:
        # The demo runs a dozen flows in this process: one Prefect client for all of them. And
        # no heartbeats: nothing watches the demo's runs for crashes (no detector on the local
        # server), so their events would only fill the server's event table.
        with (
            progress(verbose) as log_file,
            one_prefect_client(),
            temporary_settings(updates={"flows.heartbeat_frequency": None}),
        ):
            code = run_demo(console, ui_url(api_url))
    except InputError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        from moltbot.masking import mask_text

        raise fail(
            mask_text(f"demo failed: {type(exc).__name__}: {exc} (log: {log_file})"), EXIT_FAILED
        ) from None
    from moltbot.i18n import cli_text

    say(cli_text("run_footer")[1].format(log=log_file))
    raise typer.Exit(code)


@app.command("sandbox")
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port of the API emulators.")] = SANDBOX_PORT,
    smtp_port: Annotated[int, typer.Option(help="Port of the SMTP sink.")] = SMTP_PORT,
    save_blocks: Annotated[
        bool,
        typer.Option(
            "--save-blocks/--no-save-blocks",
            help="Save the sandbox-* block documents pointing at this sandbox.",
        ),
    ] = True,
) -> None:
    """Serve the local Sheets, Notion, Jira and Slack emulators and the SMTP sink until Ctrl-C."""
    from moltbot.sandbox.server import serve_forever

    def announce(running: Any) -> None:
        from moltbot.sandbox.inbox import inbox_url

        base = running.base_url
        console.print(f"sandbox listening on [bold]{base}[/bold]", soft_wrap=True)
        for label, url in (
            ("What arrived", inbox_url(running)),
            ("Google Sheets", f"{base}/sheets/v4/spreadsheets"),
            ("Notion", f"{base}/notion/v1"),
            ("Jira", f"{base}/jira/rest/api/2"),
            ("Slack webhook", running.sandbox_webhook_url),
            ("Slack ops", running.ops_webhook_url),
            ("SMTP sink", f"{running.host}:{running.smtp_port}"),
        ):
            console.print(f"  {label + ':':15} {url}", soft_wrap=True)
        if save_blocks:
            from moltbot.audit import record_blocks_saved
            from moltbot.sandbox.blocks import save_sandbox_blocks

            console.print("saving block documents (Prefect API)…")
            saved = save_sandbox_blocks(running)
            record_blocks_saved((entry.block, entry.name) for entry in saved)
            for entry in saved:
                kind = type(entry.block).__name__
                console.print(f"  {entry.name:15} {kind:24} {entry.target}", soft_wrap=True)
        console.print("Press Ctrl-C to stop.")

    if save_blocks:
        # The blocks go to the Prefect API the other commands use (the local server by default).
        connect_prefect()
    try:
        serve_forever(host=host, port=port, smtp_port=smtp_port, on_ready=announce)
    except OSError as exc:
        raise fail(f"cannot start the sandbox: {exc}") from None


def _deployment_specs(only: list[str] | None) -> list[Any]:
    from deployments.specs import build_specs

    return build_specs(only=only or None)


def _ops_block(option: str | None) -> str | None:
    from moltbot.config.settings import get_settings

    return option or get_settings().ops_block


@app.command("serve")
def serve(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve only this automation (repeatable).")
    ] = None,
    ops_block: Annotated[
        str | None,
        typer.Option(help="Notification block for failure alerts (default: ops_block setting)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Most flow runs at once in this process (default: any).")
    ] = None,
) -> None:
    """Deploy every automation on its schedule and run them in this process until Ctrl-C."""
    from deployments.serving import serve_deployments
    from moltbot.runtime import prepare_process_logging

    try:
        specs = _deployment_specs(only)
        connect_prefect()
        prepare_process_logging()
        serve_deployments(specs, ops_block=_ops_block(ops_block), limit=limit, report=console.print)
    except InputError as exc:
        raise fail(str(exc)) from None


@app.command("deploy")
def deploy(
    pool: Annotated[
        str | None, typer.Option("--pool", help="Process work pool (created if missing).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the configuration; register nothing.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Deploy only this automation (repeatable).")
    ] = None,
    ops_block: Annotated[
        str | None,
        typer.Option(help="Notification block for failure alerts (default: ops_block setting)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the deployments as JSON.")] = False,
) -> None:
    """Register every automation with a process work pool; `prefect worker start` runs them."""
    from deployments.serving import deploy_to_pool, describe

    if not check and not pool:
        raise fail("give the work pool: --pool NAME (or --check to validate only)")
    try:
        specs = _deployment_specs(only)
    except InputError as exc:
        raise fail(str(exc)) from None
    if check:
        for spec in specs:
            say(describe(spec))
        not_ready = [spec.automation.name for spec in specs if spec.missing_parameters]
        if not_ready:
            raise fail(
                f"would be registered paused (every run would fail): {', '.join(not_ready)}",
                EXIT_FAILED,
            )
        say("configuration ok: every deployment can run")
        return
    connect_prefect()
    try:
        report = (lambda line: None) if as_json else console.print
        ids = deploy_to_pool(specs, pool=pool or "", ops_block=_ops_block(ops_block), report=report)
    except InputError as exc:
        raise fail(str(exc)) from None
    _audit_deployments(specs, pool=pool or "")
    if as_json:
        documents = [
            {"id": deployment_id, **spec.as_dict()}
            for deployment_id, spec in zip(ids, specs, strict=True)
        ]
        print(json.dumps(documents, ensure_ascii=False))


def _audit_deployments(specs: list[Any], *, pool: str) -> None:
    """One audit entry per registered deployment (its masked parameters, paused or not)."""
    from moltbot.audit import cli_actor, note_config, record
    from moltbot.state.audit import AuditAction

    actor = cli_actor()
    note_config(actor)
    for spec in specs:
        document = spec.as_dict()
        record(
            AuditAction.DEPLOY,
            f"deployment {spec.automation.name}/{document.get('name', '')} on pool {pool}",
            actor=actor,
            automation=spec.automation.name,
            parameters=document.get("parameters"),
            outcome="paused" if spec.missing_parameters else "ok",
        )


@app.command("prune")
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(help="Remove what finished longer ago than this: 90d, 12h, 2w."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count per store what would go; remove nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Remove finished ledger effects, settled webhook inbox entries, outbox files and audit
    entries older than --older-than (what a run or a person still needs is kept; the audit
    chain stays verifiable)."""
    from datetime import UTC, datetime

    from moltbot.audit import cli_actor
    from moltbot.config.settings import get_settings
    from moltbot.retention import cutoff_for, prune_stores, retention_stores
    from moltbot.state.audit import AuditAction, AuditTrail
    from moltbot.state.ledger import Ledger

    if older_than is None:
        raise fail("give the age: --older-than 90d (units m, h, d, w)")
    try:
        cutoff = cutoff_for(older_than, now=datetime.now(UTC))
    except InputError as exc:
        raise fail(str(exc)) from None
    settings = get_settings()
    with Ledger.from_settings(settings) as ledger:
        results = prune_stores(retention_stores(ledger, settings), cutoff, dry_run=dry_run)
        if not dry_run:
            AuditTrail(ledger).record(
                AuditAction.PRUNE,
                f"state finished before {cutoff.isoformat(timespec='seconds')}",
                actor=cli_actor(),
                parameters={result.store: result.count for result in results},
                outcome="ok",
            )
    if as_json:
        document = {
            "older_than": older_than,
            "cutoff": cutoff.isoformat(timespec="seconds"),
            "dry_run": dry_run,
            "stores": [result.as_dict() for result in results],
        }
        print(json.dumps(document, ensure_ascii=False))
        return
    from rich.table import Table

    from moltbot.i18n import cli_text, in_locale

    store, would_remove, removed, kept = cli_text("prune_columns")
    table = Table(store, would_remove if dry_run else removed, kept)
    for result in results:
        label = in_locale(result.labels) if "en" in result.labels else result.store
        table.add_row(label, str(result.count), str(result.kept))
    console.print(table)
    summary = cli_text("prune_summary")[0 if dry_run else 1]
    say(summary.format(cutoff=f"{cutoff:%Y-%m-%d %H:%M} UTC", age=older_than))


blocks_app = typer.Typer(help="Prefect blocks of moltbot: register their types, list saved ones.")
app.add_typer(blocks_app, name="blocks")


@blocks_app.command("register")
def blocks_register() -> None:
    """Register moltbot's block types with the Prefect API (`prefect block register -m blocks`)."""
    from moltbot.blockdocs import register_block_types

    connect_prefect()
    for slug in register_block_types():
        console.print(f"registered {slug}")


@blocks_app.command("list")
def blocks_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check_hosts: Annotated[
        bool,
        typer.Option(
            "--check-hosts", help="Open a TCP connection to each block's host; flag silent ones."
        ),
    ] = False,
) -> None:
    """List saved block documents of moltbot's types (secrets are never shown), with the age
    of each secret; one older than `MOLTBOT_SECRET_ROTATION_DAYS` is flagged for rotation."""
    from datetime import UTC, datetime

    from blocks.rotation import secret_age_days
    from moltbot.blockdocs import saved_blocks
    from moltbot.config.settings import get_settings

    connect_prefect()
    documents: list[dict[str, Any]] = list(saved_blocks())
    now, rotation_days = datetime.now(UTC), get_settings().secret_rotation_days
    for document in documents:
        set_at = document["secret_set_at"]
        age = secret_age_days(datetime.fromisoformat(set_at) if set_at else None, now=now)
        document["secret_age_days"] = age
        document["rotate_secret"] = age is not None and age > rotation_days
    if check_hosts:
        from moltbot.blockcheck import flag_unreachable

        documents = flag_unreachable(documents)
    if as_json:
        print(json.dumps(documents, ensure_ascii=False))
        return
    from rich.table import Table

    columns = ("name", "type", "points at", "secret age", *(["host"] if check_hosts else []))
    table = Table(*columns)
    for document in documents:
        row = [document["name"], document["type"], document["target"] or "", _secret_age(document)]
        if check_hosts:
            answers = document["host_answers"]
            row.append({True: "answers", False: "[red]does not answer[/red]"}.get(answers, ""))
        table.add_row(*row)
    console.print(table)
    stale = sum(1 for document in documents if document["rotate_secret"])
    if stale:
        say(
            f"{stale} secret(s) older than {rotation_days} days (MOLTBOT_SECRET_ROTATION_DAYS): "
            "issue a new one, save the block again, then revoke the old one."
        )


def _secret_age(document: dict[str, Any]) -> str:
    """`12 d`; `≥12 d` when only the document's last update is known; flagged when stale."""
    age = document["secret_age_days"]
    if age is None:
        return ""
    text = f"{'≥' if document['secret_set_from'] == 'document' else ''}{age} d"
    return f"[red]{text}: rotate[/red]" if document["rotate_secret"] else text


@blocks_app.command("test")
def blocks_test(
    name: Annotated[
        str, typer.Argument(help="Saved block name (TYPE-SLUG/NAME when two types share it).")
    ],
    send: Annotated[
        bool, typer.Option("--send", help="Post one test message through a chat webhook block.")
    ] = False,
    spreadsheet_id: Annotated[
        str | None,
        typer.Option("--spreadsheet-id", help="A spreadsheet a Sheets block should read."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Make one authenticated no-op call with a saved block; say in one line what is wrong."""
    from moltbot.blockcheck import check_block

    connect_prefect()
    try:
        check = check_block(name, send=send, spreadsheet_id=spreadsheet_id)
    except InputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(check.model_dump(), ensure_ascii=False))
    else:
        verdict = {True: "[green]ok[/green]", False: "[red]failed[/red]"}.get(
            check.ok, "[yellow]not contacted[/yellow]"
        )
        where = f", {check.target}" if check.target else ""
        console.print(
            f"{verdict} {escape(check.name)} ({check.block_type}{escape(where)}): "
            f"{escape(check.detail)}",
            soft_wrap=True,
        )
    if check.ok is False:
        raise typer.Exit(EXIT_FAILED)


@app.command("doctor")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Check the Prefect API, every block, deployments, gateway, ledger and risky setups; exit 1
    when a check failed (warnings pass). Starts no server."""
    from moltbot.config.settings import get_settings
    from moltbot.doctor import as_document, decide, failed
    from moltbot.doctor_gather import gather_facts

    settings = get_settings()
    try:
        with err_console.status("doctor…", spinner="dots"):
            checks = decide(gather_facts(settings=settings), locale=settings.locale)
    except Exception as exc:  # each part guards itself; this is the last line before a traceback
        from moltbot.masking import mask_text

        raise fail(mask_text(f"doctor failed: {type(exc).__name__}: {exc}"), EXIT_FAILED) from None
    if as_json:
        print(json.dumps(as_document(checks), ensure_ascii=False))
    else:
        _print_checks(checks)
    if failed(checks):
        raise typer.Exit(EXIT_FAILED)


def _print_checks(checks: list[Any]) -> None:
    from rich.table import Table

    from moltbot.doctor import STATUSES
    from moltbot.i18n import cli_text

    labels = dict(zip(STATUSES, cli_text("doctor_statuses"), strict=True))
    styles = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    table = Table(*cli_text("doctor_columns"))
    for check in checks:
        table.add_row(
            escape(check.name),
            f"[{styles[check.status]}]{labels[check.status]}[/]",
            escape(check.detail),
            escape(check.action or ""),
        )
    console.print(table)
    counts = {status: sum(1 for check in checks if check.status == status) for status in STATUSES}
    [summary] = cli_text("doctor_summary")
    say(summary.format(failed=counts["fail"], warned=counts["warn"], ok=counts["ok"]))


webhook_app = typer.Typer(help="Webhook gateway: signed POSTs in, durable inbox, flow runs out.")
app.add_typer(webhook_app, name="webhook")


@webhook_app.command("serve")
def webhook_serve(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (put a TLS reverse proxy in front).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = GATEWAY_PORT,
) -> None:
    """Receive signed webhooks on POST /hooks/{source} and dispatch them to deployments."""
    from moltbot.errors import ServiceError
    from moltbot.runtime import prepare_process_logging
    from moltbot.webhooks.config import GatewayConfig
    from moltbot.webhooks.gateway import serve_gateway

    try:
        connect_prefect()
        prepare_process_logging()
        serve_gateway(GatewayConfig.from_project(), host=host, port=port)
    except InputError as exc:
        raise fail(str(exc)) from None
    except (ServiceError, OSError) as exc:
        raise fail(f"cannot start the webhook gateway: {exc}", EXIT_FAILED) from None


outbox_app = typer.Typer(
    help="Effects in the ledger: list, show, replay dead ones, resolve the ones in doubt."
)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("list")
def outbox_list(
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: pending, done, failed, dead or in_doubt."),
    ] = None,
    automation: Annotated[str | None, typer.Option(help="Only this automation.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """List the effects the ledger records, oldest first (no message content is shown)."""
    from moltbot.effects.outbox import list_entries
    from moltbot.state.ledger import Ledger

    try:
        with Ledger.from_settings() as ledger:
            entries = list_entries(ledger, status=status, automation=automation)
    except InputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps([entry.as_dict() for entry in entries], ensure_ascii=False))
        return
    from rich.table import Table

    from moltbot.i18n import cli_text

    table = Table(*cli_text("outbox_columns"))
    for entry in entries:
        table.add_row(
            entry.key,
            entry.automation,
            entry.kind,
            entry.status,
            entry.via or " > ".join(entry.route) or entry.target,
            entry.updated_at,
            (entry.error or "")[:80],
        )
    console.print(table)
    if not entries:
        console.print(cli_text("outbox_empty")[0])


@outbox_app.command("show")
def outbox_show(key: Annotated[str, typer.Argument(help="The effect's ledger key.")]) -> None:
    """Show one effect as JSON: route, policy, where it went, every failed attempt."""
    from moltbot.effects.outbox import get_entry
    from moltbot.state.ledger import Ledger

    try:
        with Ledger.from_settings() as ledger:
            entry = get_entry(ledger, key)
    except InputError as exc:
        raise fail(str(exc)) from None
    print(json.dumps(entry.as_dict(), ensure_ascii=False, indent=2))


def _audit_effects(ledger: Any, action: str, outcomes: list[Any]) -> None:
    """One audit entry per effect acted on by hand, with its outcome."""
    from moltbot.audit import cli_actor
    from moltbot.state.audit import AuditTrail

    trail, actor = AuditTrail(ledger), cli_actor()
    for outcome in outcomes:
        effect = ledger.get(outcome.key)
        trail.record(
            action,
            f"effect {outcome.key}",
            actor=actor,
            automation=effect.automation if effect is not None else None,
            outcome=str(outcome.status),
            detail=getattr(outcome, "error", None),
        )


def _replay(ledger: Any, keys: list[str]) -> list[Any]:
    """Replay `keys` with their destinations loaded by name and the configured runtime."""
    from moltbot.effects.destinations import executors_for
    from moltbot.effects.outbox import replay
    from moltbot.effects.runtime import runtime_from_settings

    return replay(
        ledger,
        keys,
        executors_for=executors_for,
        runtime=lambda executors: runtime_from_settings(ledger, executors),
    )


@outbox_app.command("replay")
def outbox_replay(
    keys: Annotated[list[str] | None, typer.Argument(help="Ledger keys to replay.")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Replay every dead and failed effect.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Perform dead or failed effects again, through the same idempotent path (a done one
    sends nothing)."""
    from moltbot.effects.outbox import REPLAYABLE
    from moltbot.state.audit import AuditAction
    from moltbot.state.ledger import Ledger

    if bool(keys) == replay_all:
        raise fail("give the keys to replay, or --all")
    connect_prefect()
    try:
        with Ledger.from_settings() as ledger:
            chosen = list(keys or [])
            if replay_all:
                chosen = [e.key for s in REPLAYABLE for e in ledger.effects(status=s)]
            outcomes = _replay(ledger, chosen)
            _audit_effects(ledger, AuditAction.REPLAY, outcomes)
    except InputError as exc:
        raise fail(str(exc)) from None
    rows = [outcome.model_dump(mode="json") for outcome in outcomes]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            via = f" via {row['via']}" if row["via"] else ""
            console.print(f"{row['key']}: {row['status']}{via}", soft_wrap=True)
        if not rows:
            console.print("nothing to replay")
    if any(row["status"] not in ("done", "already_done") for row in rows):
        raise typer.Exit(EXIT_FAILED)


@outbox_app.command("resolve")
def outbox_resolve(
    key: Annotated[str, typer.Argument(help="The in-doubt effect's ledger key.")],
    sent: Annotated[bool, typer.Option("--sent", help="It did arrive: record it done.")] = False,
    resend: Annotated[
        bool, typer.Option("--resend", help="It did not arrive: send it again now.")
    ] = False,
) -> None:
    """Decide an effect in doubt: it arrived (`--sent`) or send it again (`--resend`)."""
    from moltbot.audit import cli_actor
    from moltbot.effects.outbox import resolve
    from moltbot.state.audit import AuditAction, AuditTrail
    from moltbot.state.ledger import Ledger

    if sent == resend:
        raise fail("choose one: --sent or --resend")
    if resend:
        connect_prefect()
    try:
        with Ledger.from_settings() as ledger:
            entry = resolve(ledger, key, sent=sent)
            AuditTrail(ledger).record(
                AuditAction.RESOLVE,
                f"effect {key}",
                actor=cli_actor(),
                automation=entry.automation,
                outcome="arrived" if sent else "resend",
            )
            if resend:
                [outcome] = _replay(ledger, [key])
                _audit_effects(ledger, AuditAction.REPLAY, [outcome])
                console.print(f"{key}: {outcome.status}", soft_wrap=True)
                if outcome.status != "done":
                    raise typer.Exit(EXIT_FAILED)
                return
    except InputError as exc:
        raise fail(str(exc)) from None
    console.print(f"{key}: {entry.status}", soft_wrap=True)


@outbox_app.command("ack")
def outbox_ack(
    key: Annotated[
        str, typer.Argument(help="The urgent message's ledger key (or one of its steps').")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Acknowledge an urgent alert, as its link's button does: its escalation stops."""
    import re
    from datetime import UTC, datetime

    from moltbot.audit import cli_actor
    from moltbot.config.settings import get_settings
    from moltbot.effects.escalation import record_ack
    from moltbot.state.escalations import EscalationStore
    from moltbot.state.ledger import Ledger

    with Ledger.from_settings() as ledger:
        store = EscalationStore(ledger)
        # An escalation step's key (`<key>:escalation:<n>`) names the same alert.
        escalation = store.get(key) or store.get(re.sub(r":escalation:\d+$", "", key))
        if escalation is None:
            raise fail(
                f"no urgent alert awaiting acknowledgement with key {key!r} "
                "(see `uv run moltbot outbox list`)"
            )
        changed = record_ack(ledger, escalation, by=cli_actor(), now=datetime.now(UTC))
        after = store.get(escalation.key)
    assert after is not None
    status = "acknowledged" if changed else "already acknowledged"
    if as_json:
        document = {
            "key": after.key,
            "status": status,
            "acked_by": after.acked_by,
            "acked_at": after.acked_at.isoformat() if after.acked_at else None,
            "steps": list(after.steps),
        }
        print(json.dumps(document, ensure_ascii=False))
        return
    said = {
        "en": f"{status} by {after.acked_by}",
        "ko": f"{'확인함' if changed else '이미 확인됨'} ({after.acked_by})",
    }
    console.print(f"{after.key}: {said.get(get_settings().locale, said['en'])}", soft_wrap=True)


@app.command("audit")
def audit(
    since: Annotated[
        str | None, typer.Option(help="Only entries this recent: 7d, 12h, 2w (default: all).")
    ] = None,
    automation: Annotated[str | None, typer.Option(help="Only this automation.")] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check the whole chain; exit 1 naming the first row altered, inserted or removed.",
        ),
    ] = False,
    publish: Annotated[
        bool,
        typer.Option("--publish", help="Also publish each day's table as a Prefect artifact."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show the audit trail: who ran, approved, replayed, resolved, deployed or changed what."""
    from datetime import UTC, datetime

    from moltbot.audit import open_trail, publish_day
    from moltbot.durations import parse_age
    from moltbot.i18n import cli_text

    try:
        cutoff = datetime.now(UTC) - parse_age(since, option="--since") if since else None
    except InputError as exc:
        raise fail(str(exc)) from None
    ledger, trail = open_trail()
    try:
        rows = trail.rows(since=cutoff, automation=automation)
        verification = trail.verify() if verify else None
        if publish and rows:
            from moltbot.audit import audit_zone

            connect_prefect()
            for day in sorted({row.at.astimezone(audit_zone()).date() for row in rows}):
                publish_day(day, trail=trail)
    finally:
        ledger.close()
    if as_json:
        document: dict[str, Any] = {"entries": [row.as_dict() for row in rows]}
        if verification is not None:
            document["verify"] = {
                "ok": verification.ok,
                "checked": verification.checked,
                "first_bad": verification.first_bad,
                "kind": verification.kind,
                "problem": _audit_problem(verification),
                "head": verification.head,
            }
        print(json.dumps(document, ensure_ascii=False))
    else:
        _print_audit(rows, cli_text)
        if verification is not None and verification.ok:
            [line] = cli_text("audit_verified")
            say(line.format(count=verification.checked, head=verification.head[:16]))
    if verification is not None and not verification.ok:
        [line] = cli_text("audit_broken")
        raise fail(line.format(problem=_audit_problem(verification)), EXIT_FAILED)


def _audit_problem(verification: Any) -> str | None:
    """What `verify` found, in one line of the configured locale."""
    from moltbot.i18n import cli_text

    if verification.ok:
        return None
    [template] = cli_text(f"audit_problem_{verification.kind}")
    return template.format(seq=verification.first_bad, anchor=verification.anchor_seq)


def _print_audit(rows: list[Any], cli_text: Any) -> None:
    from rich.table import Table

    from moltbot.audit import audit_zone
    from moltbot.i18n import audit_actions

    zone = audit_zone()
    # The automation is in every run's name and effect's key: the JSON form has it apart.
    table = Table(*cli_text("audit_columns"))
    actions = dict(zip(audit_actions("en"), cli_text("audit_actions"), strict=True))
    for row in rows:
        table.add_row(
            str(row.seq),
            row.at.astimezone(zone).strftime("%m-%d %H:%M:%S"),
            escape(row.actor),
            actions.get(row.action, row.action),
            escape(row.target),
            row.outcome,
            escape(row.detail or ""),
        )
    console.print(table)
    if not rows:
        say(cli_text("audit_empty")[0])


server_app = typer.Typer(
    help="The local Prefect server moltbot runs in the background (UI, run history, blocks)."
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server in the background (commands start it when needed too)."""
    from moltbot.config.settings import get_settings
    from moltbot.localserver import LocalServer, ServerError

    server = LocalServer(get_settings().home / "prefect")
    try:
        with err_console.status("Prefect server…", spinner="dots") as status:
            server.ensure(on_start=lambda text: status.update(text))
    except ServerError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    _print_server(server.status())


@server_app.command("status")
def server_status() -> None:
    """Say whether the local Prefect server runs, its UI address and where its data is."""
    from moltbot.config.settings import get_settings
    from moltbot.localserver import LocalServer

    status = LocalServer(get_settings().home / "prefect").status()
    _print_server(status)
    if not status.running:
        raise typer.Exit(EXIT_FAILED)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server (its run history stays in its database)."""
    from moltbot.config.settings import get_settings
    from moltbot.localserver import LocalServer

    server = LocalServer(get_settings().home / "prefect")
    record = server.stop()
    say(f"stopped the local Prefect server (pid {record.pid})" if record else "it was not running")


def _print_server(status: Any) -> None:
    if not status.running:
        say("the local Prefect server is not running (start it: uv run moltbot server start)")
        return
    record = status.record
    say(f"local Prefect server running (pid {record.pid})")
    say(f"  UI:       {record.ui_url}")
    say(
        f"  API:      {record.api_url}  "
        f"(export PREFECT_API_URL={record.api_url} for `prefect` commands)"
    )
    say(f"  history:  {status.database}")
    say(f"  log:      {status.log_file}")
    say("  stop it:  uv run moltbot server stop")


@app.command("policy")
def policy(
    output_format: Annotated[
        str, typer.Option("--format", help="md (Markdown, the default) or json.")
    ] = "md",
) -> None:
    """Print the policy document: every automation's triggers, rules, routes and templates."""
    if output_format not in ("md", "json"):
        raise fail(f"--format must be md or json, got {output_format!r}")
    from moltbot.config.settings import get_settings
    from moltbot.policy import build_document, render_markdown

    try:
        document = build_document()
    except InputError as exc:
        raise fail(str(exc)) from None
    if output_format == "json":
        print(json.dumps(document.as_json(), ensure_ascii=False, indent=2))
        return
    # Plain stdout, not rich: `moltbot policy > docs/POLICY.md` must write the Markdown as is.
    sys.stdout.write(render_markdown(document, get_settings().locale))


# Indexes of `moltbot.metrics.display_cells`: the runs' figures, then the effects'.
_METRICS_RUN_COLUMNS = (0, 1, 2, 3, 4, 5, 11, 15)
_METRICS_EFFECT_COLUMNS = (0, 6, 7, 8, 9, 10, 12, 13, 14)


@app.command("metrics")
def metrics(
    since: Annotated[
        str, typer.Option(help="The period, back from now: 7d, 24h, 2w (default 7d).")
    ] = "7d",
    automation: Annotated[str | None, typer.Option(help="Only this automation.")] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the page with charts (self-contained HTML)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Per automation: runs, success rate, durations, effects, omissions, hours saved."""
    from datetime import UTC, datetime

    from moltbot.config.settings import get_settings
    from moltbot.durations import parse_age
    from moltbot.i18n import cli_text
    from moltbot.localserver import ServerError, connect
    from moltbot.metrics import compute, display_cells, gather, hours_saved_config
    from moltbot.registry import automation_names
    from moltbot.state.ledger import Ledger

    settings = get_settings()
    try:
        until = datetime.now(UTC)
        since_at = until - parse_age(since, option="--since")
        names = [get_automation(automation).name] if automation else automation_names()
        hours = hours_saved_config(automation_names())
    except InputError as exc:
        raise fail(str(exc)) from None
    try:
        with err_console.status("Prefect server…", spinner="dots"):
            connect(settings.home)
        reachable = True
    except ServerError:
        # The ledger's figures are still worth showing; the note says what is missing.
        reachable = False
    with Ledger.from_settings() as ledger:
        data = gather(
            ledger,
            since=since_at,
            until=until,
            automations=names,
            hours_saved=hours,
            read_prefect=reachable,
        )
    report = compute(data, names)
    if html is not None:
        from moltbot.metrics_page import render_page

        page = render_page(report, locale=settings.locale, timezone=settings.timezone)
        try:
            html.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise fail(f"--html: cannot write {html}: {exc.strerror}") from None
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    from rich.table import Column, Table

    from moltbot.runlabels import local_minute

    period, empty, unreachable, written = cli_text("metrics_lines")
    say(
        period.format(
            since=local_minute(since_at, settings.timezone),
            until=local_minute(until, settings.timezone),
            timezone=settings.timezone,
        )
    )
    if report.automations:
        headings = cli_text("metrics_columns")
        rows = [display_cells(row, settings.locale) for row in report.automations]
        # Two tables, runs then effects: sixteen columns do not fit a terminal's width.
        for part in (_METRICS_RUN_COLUMNS, _METRICS_EFFECT_COLUMNS):
            # Automation names whole: the figures' columns are the ones that give way.
            table = Table(
                Column(headings[0], no_wrap=True), *(headings[index] for index in part[1:])
            )
            for cells in rows:
                table.add_row(*(escape(cells[index]) for index in part))
            console.print(table)
    else:
        say(empty)
    if "prefect_unreachable" in report.notes:
        say(unreachable)
    if html is not None:
        say(written.format(path=html))


@app.command("shadow")
def shadow_command(
    name: Annotated[str, typer.Argument(help="The automation whose recorded runs to replay.")],
    since: Annotated[
        str, typer.Option(help="Replay the runs recorded within this age: 7d, 12h, 2w.")
    ] = "7d",
    html: Annotated[
        Path | None, typer.Option(help="Also write an HTML page with every diff to this file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Replay the recorded inputs of NAME's real runs through the current code as dry runs and
    show, run by run, which messages and tickets would be added, removed or changed (with a
    diff). Nothing is sent or recorded. Exit 0: nothing would change; 1: something would (or a
    run could not be replayed), so CI can run it after a template or mapping change."""
    from datetime import UTC, datetime

    from moltbot.config.settings import get_settings
    from moltbot.durations import parse_age
    from moltbot.i18n import cli_text
    from moltbot.shadow import render_html, replayer_of, shadow
    from moltbot.state.ledger import Ledger

    try:
        automation = get_automation(name)
        replay = replayer_of(automation)
        start = datetime.now(UTC) - parse_age(since, option="--since")
    except InputError as exc:
        raise fail(str(exc)) from None
    settings = get_settings()
    with Ledger.from_settings(settings) as ledger:
        report = shadow(automation, ledger, since=start, replay=replay)
    if html is not None:
        try:
            html.write_text(render_html(report, settings.locale), encoding="utf-8")
        except OSError as exc:
            raise fail(f"--html: cannot write the file ({exc.strerror})") from None
    code = EXIT_FAILED if report.differs or report.unreplayed else EXIT_OK
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        raise typer.Exit(code)
    _print_shadow(report, html, cli_text("shadow_lines"))
    raise typer.Exit(code)


def _print_shadow(report: Any, html: Path | None, lines: tuple[str, ...]) -> None:
    from rich.table import Table

    from moltbot.i18n import cli_text

    since = f"{report.since:%Y-%m-%d %H:%M} UTC"
    if not report.runs:
        say(lines[0].format(automation=report.automation, since=since))
        return
    from moltbot.shadow import CHANGES

    words = dict(zip(CHANGES, cli_text("shadow_changes"), strict=True))
    table = Table(*cli_text("shadow_columns"))
    for run in report.runs:
        counts = run.counts()
        table.add_row(
            run.flow_run_id,
            f"{run.recorded_at:%Y-%m-%d %H:%M}",
            *(str(counts[change]) for change in words),
        )
    console.print(table)
    kinds = dict(zip(("message", "ticket", "comment"), cli_text("shadow_kinds"), strict=True))
    for run in report.runs:
        if run.gone:
            say(lines[7].format(run=run.flow_run_id))
        elif run.problem:
            say(lines[4].format(run=run.flow_run_id, problem=run.problem))
        for diff in run.effects:
            if diff.change == "same":
                continue
            change, kind = words[diff.change], kinds.get(diff.kind, diff.kind)
            say(lines[5].format(run=run.flow_run_id, change=change, kind=kind,
                                target=diff.target, key=diff.key))  # fmt: skip
            if diff.diff:
                say(diff.diff)
    say(lines[1].format(automation=report.automation, since=since, runs=len(report.runs),
                        **report.counts()))  # fmt: skip
    say(lines[3] if report.differs or report.unreplayed else lines[2])
    if html is not None:
        say(lines[6].format(path=html))


def main() -> None:
    """Console-script entry point."""
    logging.captureWarnings(True)
    app(prog_name="moltbot")


if __name__ == "__main__":
    sys.exit(main())
