"""The `moltbot` command line: list, run, demo, sandbox, serve, deploy, blocks, webhook (Typer)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from moltbot.errors import DeliveryFailed, InputError
from moltbot.registry import automations, get_automation

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)

app = typer.Typer(
    name="moltbot",
    help="Business-automation bots on Prefect: observable, never sent twice, no secret in a log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Human output goes to stdout; `--json` output is printed with print() and nothing else.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(reason: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print a one-line reason on stderr and return the exit to raise."""
    err_console.print(f"[red]error:[/red] {reason}", markup=True, soft_wrap=True)
    return typer.Exit(code)


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

    table = Table("automation", "description", "default schedule")
    for automation in automations():
        table.add_row(automation.name, automation.description, automation.default_schedule or "")
    console.print(table)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`["a=1", "b=x"]` -> `{"a": 1, "b": "x"}`: values are JSON when they parse, else strings.

    Raises:
        InputError: an item without `=` or with an empty name.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        name, separator, raw_value = pair.partition("=")
        if not separator or not name.strip():
            raise InputError(f"--param expects key=value, got {pair!r}")
        if _URL_WITH_PASSWORD.search(raw_value):
            # Parameters are stored with the run and shown in the Prefect UI.
            raise InputError(
                f"--param {name.strip()}: the value holds a URL with a password; keep it in a "
                "Prefect Secret block instead (for a source: source=secret:<block name>)"
            )
        try:
            value: Any = json.loads(raw_value)
        except json.JSONDecodeError:
            value = raw_value
        params[name.strip()] = value
    return params


def _check_params(automation_name: str, flow: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown or missing parameters and values of the wrong type before running."""
    from prefect.exceptions import ParameterTypeError

    schema = flow.parameters
    known = list(schema.properties)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InputError(
            f"{automation_name}: unknown parameter {', '.join(map(repr, unknown))} "
            f"(valid: {', '.join(known)})"
        )
    missing = [name for name in schema.required or [] if name not in params]
    if missing:
        raise InputError(
            f"{automation_name}: missing parameter {', '.join(map(repr, missing))} "
            f"(give it with --param {missing[0]}=...)"
        )
    try:
        return flow.validate_parameters(params)
    except ParameterTypeError as exc:
        raise InputError(f"{automation_name}: {exc}") from None


def run_automation(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run automation `name` with `params` in this process and return its result.

    Raises:
        InputError: unknown automation, unknown or invalid parameters, or bad input data.
        DeliveryFailed: the run finished but some deliveries failed.
    """
    automation = get_automation(name)
    flow = automation.load_flow()
    from moltbot.runtime import prepare_process_logging

    prepare_process_logging()
    checked = _check_params(name, flow, params)
    return flow(**checked)


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Automation name (see `moltbot list`).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values parsed).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compute and render; deliver and record nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run one automation now, in this process."""
    try:
        get_automation(name)
        params = parse_params(param or [])
        if dry_run:
            params["dry_run"] = True
        result = run_automation(name, params)
    except InputError as exc:
        raise fail(str(exc)) from None
    except DeliveryFailed as exc:
        if as_json:
            print(json.dumps(exc.result, ensure_ascii=False))
        raise fail(f"{name}: {exc}", EXIT_FAILED) from None
    except Exception as exc:
        from moltbot.masking import mask_text

        raise fail(mask_text(f"{name} failed: {type(exc).__name__}: {exc}"), EXIT_FAILED) from None
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        console.print_json(json.dumps(result, ensure_ascii=False))


@app.command("demo")
def demo() -> None:
    """Run the automations on bundled sample data against the local sandbox (no accounts)."""
    from demo.run import run_demo

    try:
        code = run_demo(console)
    except InputError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command("sandbox")
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port of the API emulators.")] = 8787,
    smtp_port: Annotated[int, typer.Option(help="Port of the SMTP sink.")] = 8025,
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
        base = running.base_url
        console.print(f"sandbox listening on [bold]{base}[/bold]", soft_wrap=True)
        for label, url in (
            ("Google Sheets", f"{base}/sheets/v4/spreadsheets"),
            ("Notion", f"{base}/notion/v1"),
            ("Jira", f"{base}/jira/rest/api/2"),
            ("Slack webhook", running.sandbox_webhook_url),
            ("Slack ops", running.ops_webhook_url),
            ("SMTP sink", f"{running.host}:{running.smtp_port}"),
        ):
            console.print(f"  {label + ':':15} {url}", soft_wrap=True)
        if save_blocks:
            from moltbot.sandbox.blocks import save_sandbox_blocks

            console.print("saving block documents (Prefect API)…")
            for entry in save_sandbox_blocks(running):
                kind = type(entry.block).__name__
                console.print(f"  {entry.name:15} {kind:24} {entry.target}", soft_wrap=True)
        console.print("Press Ctrl-C to stop.")

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
        prepare_process_logging()
        serve_deployments(specs, ops_block=_ops_block(ops_block), limit=limit, report=console.print)
    except InputError as exc:
        raise fail(str(exc)) from None


@app.command("deploy")
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Process work pool (created if missing).")],
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
    from deployments.serving import deploy_to_pool

    try:
        specs = _deployment_specs(only)
        report = (lambda line: None) if as_json else console.print
        ids = deploy_to_pool(specs, pool=pool, ops_block=_ops_block(ops_block), report=report)
    except InputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        documents = [
            {"id": deployment_id, **spec.as_dict()}
            for deployment_id, spec in zip(ids, specs, strict=True)
        ]
        print(json.dumps(documents, ensure_ascii=False))


blocks_app = typer.Typer(help="Prefect blocks of moltbot: register their types, list saved ones.")
app.add_typer(blocks_app, name="blocks")


@blocks_app.command("register")
def blocks_register() -> None:
    """Register moltbot's block types with the Prefect API (`prefect block register -m blocks`)."""
    from moltbot.blockdocs import register_block_types

    for slug in register_block_types():
        console.print(f"registered {slug}")


@blocks_app.command("list")
def blocks_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """List saved block documents of moltbot's types (secrets are never shown)."""
    from moltbot.blockdocs import saved_blocks

    documents = saved_blocks()
    if as_json:
        print(json.dumps(documents, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("name", "type", "points at")
    for document in documents:
        table.add_row(document["name"], document["type"], document["target"] or "")
    console.print(table)


webhook_app = typer.Typer(help="Webhook gateway: signed POSTs in, durable inbox, flow runs out.")
app.add_typer(webhook_app, name="webhook")


@webhook_app.command("serve")
def webhook_serve(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (put a TLS reverse proxy in front).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8787,
) -> None:
    """Receive signed webhooks on POST /hooks/{source} and dispatch them to deployments."""
    from moltbot.errors import ServiceError
    from moltbot.runtime import prepare_process_logging
    from moltbot.webhooks.config import GatewayConfig
    from moltbot.webhooks.gateway import serve_gateway

    try:
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
    from moltbot.state.ledger import Ledger

    if bool(keys) == replay_all:
        raise fail("give the keys to replay, or --all")
    try:
        with Ledger.from_settings() as ledger:
            chosen = list(keys or [])
            if replay_all:
                chosen = [e.key for s in REPLAYABLE for e in ledger.effects(status=s)]
            outcomes = _replay(ledger, chosen)
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
    from moltbot.effects.outbox import resolve
    from moltbot.state.ledger import Ledger

    if sent == resend:
        raise fail("choose one: --sent or --resend")
    try:
        with Ledger.from_settings() as ledger:
            entry = resolve(ledger, key, sent=sent)
            if resend:
                [outcome] = _replay(ledger, [key])
                console.print(f"{key}: {outcome.status}", soft_wrap=True)
                if outcome.status != "done":
                    raise typer.Exit(EXIT_FAILED)
                return
    except InputError as exc:
        raise fail(str(exc)) from None
    console.print(f"{key}: {entry.status}", soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    logging.captureWarnings(True)
    app(prog_name="moltbot")


if __name__ == "__main__":
    sys.exit(main())
