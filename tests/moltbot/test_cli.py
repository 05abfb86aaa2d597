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
    choices = "(choose from: daily-report, inventory-alert, form-digest, ticket-creation)"
    assert f"unknown automation 'weekly-horoscope' {choices}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_parameter_exits_2_naming_the_valid_ones(orders_csv: Path) -> None:
    result = run_daily_report(orders_csv, "--param", "colour=red")

    assert result.exit_code == 2
    assert "unknown parameter 'colour'" in result.stderr
    assert "valid: source, report_date, channels" in result.stderr


def test_missing_required_parameter_exits_2() -> None:
    result = runner.invoke(app, ["run", "daily-report"])

    assert result.exit_code == 2
    assert "missing parameter 'source'" in result.stderr


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
def test_real_process_json_stdout_is_one_document(prefect_api: str, orders_csv: Path) -> None:
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
    assert "Finished in state Completed" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    commands = [command.name for command in app.registered_commands]
    for group in app.registered_groups:
        commands += [
            f"{group.name} {command.name}" for command in group.typer_instance.registered_commands
        ]

    assert commands == [
        "list", "run", "demo", "sandbox", "serve", "deploy", "blocks register", "blocks list",
        "webhook serve", "outbox list", "outbox show", "outbox replay", "outbox resolve",
    ]  # fmt: skip
    for command in commands:
        assert re.search(rf"moltbot {command}\b", readme), command


def test_sandbox_command_serves_every_emulator_and_saves_its_blocks(
    tmp_path: Path, prefect_api: str
) -> None:
    import signal
    import socket

    import httpx

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "moltbot.cli", "sandbox", "--port", str(ports[0]),
         "--smtp-port", str(ports[1])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
    )  # fmt: skip
    try:
        lines: list[str] = []
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = process.stdout.readline()
            assert line, f"sandbox exited early: {process.stderr.read()}"
            lines.append(line.rstrip())
        printed = {
            label.strip(): value.strip()
            for label, _, value in (line.partition(": ") for line in lines[1:7])
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

    base = f"http://127.0.0.1:{ports[0]}"
    assert lines[0] == f"sandbox listening on {base}"
    assert printed == {
        "Google Sheets": f"{base}/sheets/v4/spreadsheets",
        "Notion": f"{base}/notion/v1",
        "Jira": f"{base}/jira/rest/api/2",
        "Slack webhook": f"{base}/slack/services/T0000/B0000/sandbox",
        "Slack ops": f"{base}/slack/services/T0000/B0000/ops",
        "SMTP sink": f"127.0.0.1:{ports[1]}",
    }
    saved = [line.split()[0] for line in lines[8:-1]]
    assert saved == ["sandbox-sheets", "sandbox-notion", "sandbox-jira", "sandbox-slack",
                     "sandbox-email", "sandbox-ops"]  # fmt: skip
    assert (response.status_code, response.text) == (200, "ok")
    assert [post["payload"]["text"] for post in posts] == ["안녕하세요"]
    assert found and jira_user["emailAddress"] == "sandbox@moltbot.local"
    assert process.returncode == 0
