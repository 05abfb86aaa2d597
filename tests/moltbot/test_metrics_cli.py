"""`moltbot metrics`: gathered from a real Prefect API and ledger, printed, written as a page."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, LogCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import AwaitingRetry, Completed, Failed, Running
from typer.testing import CliRunner

from flows.reconcile.checks import Rate
from flows.reconcile.render import run_summary
from moltbot.cli import app
from moltbot.metrics import compute, gather
from moltbot.registry import automation_names, get_automation
from moltbot.state.audit import AuditAction, AuditTrail
from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger

runner = CliRunner()
DAILY = "daily-report"


def make_run(tags: list[str], states: list) -> str:
    """A daily-report flow run in the Prefect API, moved through `states`; its id."""
    flow = get_automation(DAILY).load_flow()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow, tags=tags)
        for state in states:
            client.set_flow_run_state(run.id, state, force=True)
    return str(run.id)


@pytest.fixture
def week(prefect_api: str) -> Iterator[datetime]:
    """A period holding: three daily-report runs (one retried, one failed, one dry run), two
    effects (one by a fallback, one dead), a skip logged by the effects layer, an
    acknowledgement and reconcile's last summary. Yields the period's start."""
    # The period starts now: the session's server holds earlier tests' runs too.
    since = datetime.now(UTC)
    retried = make_run([DAILY, "schedule"], [Running(), AwaitingRetry(), Running(), Completed()])
    failed = make_run([DAILY, "cli"], [Running(), Failed(message="a channel refused")])
    make_run([DAILY, "cli", "dry-run"], [Running(), Completed()])
    with Ledger.from_settings() as ledger:
        route = {"route": json.dumps(["team-slack", "ops-email"])}
        ledger.claim("k:done", automation=DAILY, kind="message", target="team-slack",
                     flow_run_id=retried, details=route)  # fmt: skip
        ledger.complete("k:done", remote_id="1", via="ops-email")
        ledger.claim("k:dead", automation=DAILY, kind="message", target="team-slack",
                     flow_run_id=failed)  # fmt: skip
        ledger.note_attempt("k:dead")
        ledger.fail("k:dead", "refused", dead=True)
        AuditTrail(ledger).record(
            AuditAction.ACKNOWLEDGE, "k:done", actor="user:kim", automation=DAILY
        )
        # The retried run was started by a webhook event received an hour before its effect
        # was done (the ledger's own time of it, so no clock is read here).
        received = ledger.get("k:done").updated_at - timedelta(hours=1)
        inbox = Inbox(ledger)
        entry, _ = inbox.accept(
            "stripe",
            {"id": "evt_1", "type": "payment.failed", "occurred_at": None, "payload": {}},
            received_at=received,
        )
        inbox.mark_dispatched(entry.id, flow_run_id=retried, results=[])
    summary = run_summary(
        "en", new=[], rates={DAILY: Rate(4, 1)}, total=1, since_hours=48, deliveries=[],
        dry_run=False,
    )  # fmt: skip
    with get_client(sync_client=True) as client:
        client.create_logs(
            [
                LogCreate(
                    name="prefect.task_runs",
                    level=20,
                    message="message daily-report 2026-12-03: already_done via team-slack",
                    timestamp=datetime.now(UTC),
                    flow_run_id=retried,
                )
            ]
        )
        client.create_artifact(
            artifact=ArtifactCreate(key="reconcile", type="markdown", data=summary)
        )
    yield since


def test_gathering_reads_runs_effects_skips_audit_and_omissions(week: datetime) -> None:
    until = datetime.now(UTC)  # after everything the fixture made
    with Ledger.from_settings() as ledger:
        data = gather(ledger, since=week, until=until, automations=automation_names())
    [daily] = compute(data, automation_names()).automations

    assert data.notes == []
    assert (daily.automation, daily.runs, daily.finished, daily.succeeded) == (DAILY, 2, 2, 1)
    assert daily.success_rate == 0.5
    assert daily.p50_seconds is not None and daily.p95_seconds >= daily.p50_seconds
    # The retried run ran twice; the dead effect took two attempts.
    assert (daily.run_retries, daily.effect_retries) == (1, 1)
    assert {k: v for k, v in daily.effects.items() if v} == {
        "done": 1,
        "already_done": 1,
        "dead": 1,
    }
    assert (daily.fallbacks, daily.acknowledgements, daily.escalations) == (1, 1, 0)
    assert (daily.omissions_expected, daily.omissions, daily.omission_rate) == (4, 1, 0.25)
    # From the webhook's receipt, not the run's start, to the effect done.
    assert daily.trigger_to_delivery_seconds == 3600


def test_json_is_one_document_with_the_figures(week: datetime) -> None:
    (Path.cwd() / "moltbot.toml").write_text("[metrics.hours_saved]\ndaily-report = 0.5\n")

    result = runner.invoke(app, ["metrics", "--since", "1h", "--automation", DAILY, "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    [daily] = document["automations"]
    assert daily["automation"] == DAILY
    assert daily["hours_saved"] >= 0.5 and daily["hours_saved"] % 0.5 == 0
    assert document["totals"]["runs"] == daily["runs"]
    assert document["notes"] == []


def test_the_html_page_under_ko_has_a_korean_summary_and_an_embedded_chart(
    week: datetime, tmp_path: Path
) -> None:
    page = tmp_path / "metrics.html"

    result = runner.invoke(
        app, ["--locale", "ko", "metrics", "--since", "1h", "--automation", DAILY,
              "--html", str(page)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "성공률" in result.stdout and "페이지 저장" in result.stdout
    html = page.read_text(encoding="utf-8")
    assert '<html lang="ko">' in html
    assert "moltbot 운영 지표" in html and "실행되었고" in html
    # The summary comes before the chart, the chart before the table.
    assert html.index('class="summary"') < html.index("<img") < html.index("<table>")
    [encoded] = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<td>daily-report</td>" in html


@pytest.fixture
def unreachable_prefect(prefect_api: str) -> Iterator[None]:
    # No Prefect API answers there (404s), as behind a wrong URL. A closed port would do too,
    # but httpx waits between its connection retries.
    with temporary_settings(updates={PREFECT_API_URL: f"{prefect_api}/no-api-here"}):
        yield


def test_empty_state_and_no_prefect_say_so_in_one_line_each(unreachable_prefect: None) -> None:
    result = runner.invoke(app, ["metrics"])

    assert result.exit_code == 0, result.output
    assert "Nothing was recorded in this period" in result.stdout
    assert "The Prefect API could not be reached" in result.stdout
    assert "Traceback" not in result.output

    as_json = runner.invoke(app, ["metrics", "--json"])
    assert json.loads(as_json.stdout)["notes"] == ["prefect_unreachable"]
    assert json.loads(as_json.stdout)["automations"] == []


def test_without_prefect_the_ledgers_figures_remain(unreachable_prefect: None) -> None:
    with Ledger.from_settings() as ledger:
        ledger.claim("k:1", automation="form-digest", kind="message", target="outbox")
        ledger.complete("k:1", via="outbox")

    result = runner.invoke(app, ["metrics", "--json"])

    [digest] = json.loads(result.stdout)["automations"]
    assert (digest["automation"], digest["runs"], digest["effects"]["done"]) == (
        "form-digest",
        0,
        1,
    )


def test_a_page_that_cannot_be_written_is_one_line_and_exit_2(unreachable_prefect: None) -> None:
    result = runner.invoke(app, ["metrics", "--html", "no-such-folder/metrics.html"])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --html: cannot write no-such-folder/metrics.html")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--since", "yesterday"], "--since must be a positive whole number with a unit"),
        (["--since", "0d"], "--since must be a positive whole number with a unit"),
        (["--automation", "nightly-report"], "unknown automation 'nightly-report'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments: list[str], problem: str) -> None:
    result = runner.invoke(app, ["metrics", *arguments])

    assert result.exit_code == 2
    assert problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "yesterday" not in result.stderr
