"""The `moltbot` CLI through Typer's runner (in process) and once as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moltbot.cli import app, parse_params
from moltbot.registry import automations
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import save_sandbox_blocks
from tests.flows.test_daily_report_flow import EXPECTED_KPIS, ORDERS_CSV

runner = CliRunner()


def run_daily_report(source: Path, *extra: str):
    """`moltbot run daily-report --param source=SOURCE EXTRA…` through the Typer runner."""
    return runner.invoke(app, ["run", "daily-report", "--param", f"source={source}", *extra])


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV, encoding="utf-8")
    return path


def test_list_json_is_the_registry() -> None:
    result = runner.invoke(app, ["list", "--json"])

    assert result.exit_code == 0
    assert [entry["name"] for entry in json.loads(result.stdout)] == [a.name for a in automations()]


def test_list_human_shows_every_automation() -> None:
    result = runner.invoke(app, ["list"])

    assert result.exit_code == 0
    for automation in automations():
        assert automation.name in result.stdout


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["a=1"], {"a": 1}),
        (["a=true", "b=null"], {"a": True, "b": None}),
        (['c=["x","슬랙"]'], {"c": ["x", "슬랙"]}),
        (["d=2026-11-23"], {"d": "2026-11-23"}),
        (["e=a=b"], {"e": "a=b"}),
        (["f="], {"f": ""}),
    ],
)
def test_param_values_are_json_when_they_parse(pairs: list[str], expected: dict) -> None:
    assert parse_params(pairs) == expected


def test_unknown_automation_exits_2_naming_the_choices() -> None:
    result = runner.invoke(app, ["run", "weekly-horoscope"])

    assert result.exit_code == 2
    assert result.stdout == ""
    choices = (
        "(choose from: daily-report, inventory-alert, form-digest, ticket-creation, "
        "service-health, error-spike, payment-failures, reconcile, on-call, health, "
        "metrics-weekly)"
    )
    assert f"unknown automation 'weekly-horoscope' {choices}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_parameter_exits_2_naming_the_valid_ones(orders_csv: Path) -> None:
    result = run_daily_report(orders_csv, "--param", "colour=red")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: colour: not a parameter of daily-report")
    assert "valid: source, report_date, channels" in result.stderr


def test_missing_required_parameter_exits_2() -> None:
    result = runner.invoke(app, ["run", "daily-report"])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: source: missing; daily-report needs source")


def test_a_missing_choice_of_parameters_is_refused_before_any_run() -> None:
    result = runner.invoke(app, ["run", "inventory-alert"])

    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: source: missing; inventory-alert needs a stock source: source, or "
        "sheets_block + spreadsheet_id + worksheet"
    )


@pytest.mark.parametrize(
    ("pair", "line"),
    [
        (
            "report_date=2026-13-45",
            "error: report_date: expected a date (YYYY-MM-DD) (input should be a valid date",
        ),
        (
            'channels=["outbox",',
            "error: channels: looks like JSON but does not parse (Expecting value at character 11)",
        ),
        (
            "channels=[1]",
            "error: channels[0]: expected a JSON list of (text or JSON lists of text)",
        ),
        ("force=maybe", "error: force: expected true or false"),
    ],
)
def test_a_bad_value_gets_one_line_starting_with_the_parameters_name(
    pair: str, line: str, orders_csv: Path
) -> None:
    result = run_daily_report(orders_csv, "--param", pair)

    assert result.exit_code == 2
    assert result.stderr.startswith(line)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "2026-13-45" not in result.stderr and "maybe" not in result.stderr


def test_a_password_in_a_param_is_refused_before_any_run() -> None:
    result = runner.invoke(
        app, ["run", "daily-report", "--param", "source=postgresql://shop:hunter2@db/sales"]
    )

    assert result.exit_code == 2
    assert "URL with a password" in result.stderr
    assert "hunter2" not in result.stderr


def test_malformed_param_exits_2() -> None:
    result = runner.invoke(app, ["run", "daily-report", "--param", "source"])

    assert result.exit_code == 2
    assert "--param expects key=value" in result.stderr


@pytest.mark.slow
def test_run_dry_run_json_prints_only_the_result(prefect_api: str, orders_csv: Path) -> None:
    result = run_daily_report(
        orders_csv, "--param", "report_date=2026-11-23", "--dry-run", "--json"
    )

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["report_date"] == "2026-11-23"
    assert {key: document["kpis"][key] for key in EXPECTED_KPIS} == EXPECTED_KPIS
    [delivery] = document["deliveries"]
    assert {key: delivery[key] for key in ("channel", "status", "key", "via", "tried")} == {
        "channel": "outbox",
        "status": "dry_run",
        "key": "daily-report:2026-11-23:outbox",
        "via": None,
        "tried": [],
    }


@pytest.mark.slow
def test_bad_input_exits_2_naming_column_and_file(prefect_api: str, orders_csv: Path) -> None:
    orders_csv.write_text(ORDERS_CSV.replace(",quantity,", ",qty,"), encoding="utf-8")

    result = run_daily_report(orders_csv, "--json")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "orders.csv: missing column 'quantity'" in result.stderr


@pytest.mark.slow
def test_wrong_parameter_type_exits_2(prefect_api: str, orders_csv: Path) -> None:
    result = run_daily_report(orders_csv, "--param", "report_date=soon")

    assert result.exit_code == 2
    assert "report_date" in result.stderr


@pytest.mark.slow
def test_failed_delivery_exits_1_with_the_result_on_stdout(
    prefect_api: str, orders_csv: Path, sandbox
) -> None:
    from blocks import SlackIncomingWebhook

    SlackIncomingWebhook(url=sandbox.slack_webhook_url("cli")).save("cli-slack", overwrite=True)
    sandbox.state.slack.inject_fault(404, body="channel_not_found")

    result = run_daily_report(
        orders_csv,
        "--param",
        "report_date=2026-11-23",
        "--param",
        'channels=["cli-slack"]',
        "--json",
    )

    assert result.exit_code == 1
    assert json.loads(result.stdout)["deliveries"][0]["status"] == "dead"
    assert "cli-slack: Slack answered 404 channel_not_found" in result.stderr


@pytest.mark.slow
def test_real_process_json_stdout_is_one_document(
    prefect_api: str, orders_csv: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "moltbot.cli",
            "run",
            "daily-report",
            "--param",
            f"source={orders_csv}",
            "--param",
            "report_date=2026-11-23",
            "--dry-run",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["kpis"]["revenue"] == 47000.0
    # Prefect's INFO lines go to the log file, not over the result.
    assert "Finished in state Completed" not in completed.stderr
    assert "Traceback" not in completed.stderr
    log = (tmp_path / "home" / "logs" / "moltbot.log").read_text(encoding="utf-8")
    assert "Finished in state Completed" in log


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    commands = [command.name for command in app.registered_commands]
    for group in app.registered_groups:
        commands += [
            f"{group.name} {command.name}" for command in group.typer_instance.registered_commands
        ]

    assert commands == [
        "list", "show", "run", "demo", "sandbox", "serve", "deploy", "prune", "doctor", "audit",
        "policy", "metrics", "shadow", "blocks register",
        "blocks list", "blocks test", "webhook serve", "outbox list", "outbox show",
        "outbox replay", "outbox resolve", "outbox ack", "server start", "server status",
        "server stop",
    ]  # fmt: skip
    for command in commands:
        assert re.search(rf"moltbot {command}\b", readme), command


def test_sandbox_command_serves_every_emulator_and_saves_its_blocks(
    tmp_path: Path, prefect_api: str, sandbox_server: Sandbox
) -> None:
    import signal
    import socket

    import httpx

    from tests.e2e.servers import takes_ctrl_c

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "moltbot.cli", "sandbox", "--port", str(ports[0]),
         "--smtp-port", str(ports[1])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PREFECT_API_URL": prefect_api}, preexec_fn=takes_ctrl_c,
    )  # fmt: skip
    try:
        lines: list[str] = []
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = process.stdout.readline()
            assert line, f"sandbox exited early: {process.stderr.read()}"
            lines.append(line.rstrip())
        printed = {
            label.strip(): value.strip()
            for label, _, value in (line.partition(": ") for line in lines[1:8])
        }
        response = httpx.post(printed["Slack webhook"], json={"text": "안녕하세요"}, timeout=5)
        posts = httpx.get(f"http://127.0.0.1:{ports[0]}/slack/_sandbox/posts", timeout=5).json()
        from blocks import JiraCredentials, NotionCredentials

        notion = NotionCredentials.load("sandbox-notion").get_client()
        found = notion.search(query="moltbot digests")["results"]
        jira_user = JiraCredentials.load("sandbox-jira").get_client().myself()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
        # The command saved the session's block names pointing at its own sandbox, now gone:
        # point them back at the session sandbox the later tests use.
        save_sandbox_blocks(sandbox_server)

    base = f"http://127.0.0.1:{ports[0]}"
    assert lines[0] == f"sandbox listening on {base}"
    assert printed == {
        "What arrived": f"{base}/inbox",
        "Google Sheets": f"{base}/sheets/v4/spreadsheets",
        "Notion": f"{base}/notion/v1",
        "Jira": f"{base}/jira/rest/api/2",
        "Slack webhook": f"{base}/slack/services/T0000/B0000/sandbox",
        "Slack ops": f"{base}/slack/services/T0000/B0000/ops",
        "SMTP sink": f"127.0.0.1:{ports[1]}",
    }
    saved = [line.split()[0] for line in lines[9:-1]]
    assert saved == ["sandbox-sheets", "sandbox-notion", "sandbox-jira", "sandbox-slack",
                     "sandbox-email", "sandbox-ops"]  # fmt: skip
    assert (response.status_code, response.text) == (200, "ok")
    assert [post["payload"]["text"] for post in posts] == ["안녕하세요"]
    assert found and jira_user["emailAddress"] == "sandbox@moltbot.local"
    assert process.returncode == 0


@pytest.mark.slow
def test_run_without_json_prints_the_demos_tables_and_keeps_hangul(
    prefect_api: str, orders_csv: Path
) -> None:
    result = run_daily_report(orders_csv, "--param", "report_date=2026-11-23", "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert "DRY RUN: nothing was sent or recorded" in result.stdout
    assert "revenue" in result.stdout and "₩47,000" in result.stdout
    assert "would send" in result.stdout
    assert "Prefect UI: http" in result.stdout and "/runs/flow-run/" in result.stdout
    assert "{" not in result.stdout  # tables, not JSON


@pytest.mark.slow
def test_json_keeps_hangul_readable(prefect_api: str, orders_csv: Path) -> None:
    result = runner.invoke(
        app,
        ["--locale", "ko", "run", "daily-report", "--param", f"source={orders_csv}",
         "--param", "report_date=2026-11-23", "--dry-run", "--json"],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert "\\u" not in result.stdout
    assert any("\uac00" <= ch <= "\ud7a3" for ch in result.stdout)


def test_version_and_short_help() -> None:
    from moltbot import __version__

    assert runner.invoke(app, ["--version"]).stdout == f"moltbot {__version__}\n"
    helped = runner.invoke(app, ["run", "-h"])
    assert helped.exit_code == 0 and "--param" in helped.stdout


def test_show_in_korean_keeps_the_toml_tables_a_meaning_names() -> None:
    result = runner.invoke(
        app, ["--locale", "ko", "show", "payment-failures"], env={"COLUMNS": "250"}
    )

    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "일정: 5분마다 (Asia/Seoul)" in out
    assert "`[ticket_creation.mappings.<name>]`" in out
    assert "`[routes.payment-failures]`" in out
    assert "기본 경로: alert: outbox; summary: outbox" in out
    assert "예: uv run moltbot run payment-failures" in out


def test_show_lists_parameters_schedule_in_words_and_an_example() -> None:
    result = runner.invoke(app, ["show", "inventory-alert"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "every 30 minutes (Asia/Seoul)" in out
    for name in ("source", "sales_source", "channels_by_severity", "cooldown_hours"):
        assert name in out
    assert "a JSON object of JSON lists of text" in out
    assert "needs a stock source: source, or sheets_block + spreadsheet_id + worksheet" in out
    assert "example: uv run moltbot run inventory-alert" in out
    document = json.loads(runner.invoke(app, ["show", "daily-report", "--json"]).stdout)
    assert document["schedule_words"] == "at 09:00 (Asia/Seoul)"
    assert [p["name"] for p in document["parameters"]][:2] == ["source", "report_date"]
    assert document["parameters"][0]["required"] is True


def test_list_says_schedules_in_words() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})

    assert "every 30 minutes (Asia/Seoul)" in result.stdout
    assert "on demand (webhooks)" in result.stdout


def test_rich_markup_does_not_eat_table_names_in_errors(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(
        "[deployments.daily-report]\nparameters = { report_date = 'soon' }\n", encoding="utf-8"
    )

    result = runner.invoke(app, ["deploy", "--check"])

    assert result.exit_code == 2
    assert "[deployments.daily-report.parameters]" in result.stderr
    assert "report_date: expected a date" in result.stderr


def test_deploy_check_names_what_each_paused_deployment_needs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", "--check"], env={"COLUMNS": "300"})

    assert result.exit_code == 1
    out = " ".join(result.stdout.split())
    assert (
        "inventory-alert/default: cron '*/30 * * * *' (Asia/Seoul), at most 1 at once "
        "(cancel_new)" in out
    )
    assert (
        "PAUSED, every run would fail: add a stock source: source, or sheets_block + "
        "spreadsheet_id + worksheet to [deployments.inventory-alert.parameters]" in out
    )
    assert "add source to [deployments.daily-report.parameters]" in out
    assert (
        "add services to check: services (or [monitoring.services.<name>] tables in "
        "moltbot.toml) to [deployments.service-health.parameters]" in out
    )
    assert "add log sources: sources to [deployments.error-spike.parameters]" in out
    assert "would be registered paused" in result.stderr

    (tmp_path / "moltbot.toml").write_text(
        "[deployments.daily-report]\nparameters = { source = 'orders.csv' }\n"
        "[deployments.inventory-alert]\nparameters = { sheets_block = 's', "
        "spreadsheet_id = 'x', worksheet = 'Stock' }\n"
        "[deployments.form-digest]\nenabled = false\n"
        "[deployments.error-spike.parameters.sources.app]\npaths = 'app.log'\n"
        "[monitoring.services.shop]\nurl = 'https://shop.example.com/health'\n",
        encoding="utf-8",
    )
    ready = runner.invoke(app, ["deploy", "--check"])
    assert ready.exit_code == 0, ready.stdout + ready.stderr
    assert "configuration ok" in ready.stdout


@pytest.mark.parametrize(
    ("cron", "locale", "words"),
    [
        ("*/30 * * * *", "ko", "30분마다 (Asia/Seoul)"),
        ("0 * * * *", "ko", "매시 정각 (Asia/Seoul)"),
        ("0 9 * * *", "ko", "매일 09:00 (Asia/Seoul)"),
        ("0 9 * * 1", "ko", "매주 월요일 09:00 (Asia/Seoul)"),
        ("0 9 * * *", "en", "at 09:00 (Asia/Seoul)"),
        ("30 8 * * 1-5", "en", "at 08:30, Monday through Friday (Asia/Seoul)"),
        (None, "en", "on demand (webhooks)"),
    ],
)
def test_schedules_in_words(cron: str | None, locale: str, words: str) -> None:
    from moltbot.describe import schedule_words

    assert schedule_words(cron, "Asia/Seoul", locale) == words


def test_under_locale_ko_the_demo_speaks_korean(monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.run import TEXTS, text

    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    assert set(TEXTS["ko"]) == set(TEXTS["en"])
    assert text("first_run") == "inventory-alert 첫 실행"
    assert text("inbox", path="x") == "샌드박스가 받은 것(Slack, 메일, Notion, Jira, 메신저): x"
