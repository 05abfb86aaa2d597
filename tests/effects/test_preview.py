"""Dry-run previews: each destination shows what it would receive, and nothing goes out."""

from __future__ import annotations

import re
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from demo.run import save_sandbox_channels
from demo.sample_forms import (
    NPS_COLUMN,
    PERSONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SAMPLE_FORM_NAME,
    SAMPLE_FORM_WORKSHEET,
    sample_form_sheet,
)
from flows.daily_report.flow import daily_report
from flows.form_digest.flow import form_digest
from flows.ticket_creation.effects import dry_run_effects
from flows.ticket_creation.flow import draft_tickets, read_event_items
from flows.ticket_creation.mapping import load_mappings
from flows.ticket_creation.plan import plan_drafts
from flows.ticket_creation.render import comment_body
from moltbot.config.project import ProjectConfig
from moltbot.config.settings import get_settings
from moltbot.effects import EffectsRuntime, Intent, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.effects.preview import preview_lines, result_outcomes
from moltbot.messages import Message
from moltbot.sandbox.notion import SANDBOX_DIGEST_DATA_SOURCE_ID, SANDBOX_DIGEST_DATABASE_ID
from moltbot.state.ledger import Ledger

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
TIMEZONE = "Asia/Seoul"

ORDERS_CSV = """\
order_id,ordered_at,product,channel,region,quantity,unit_price,status
A1,2026-11-23 01:00:00,무선 이어폰,web,Seoul,2,10000,completed
A3,2026-11-23 03:00:00,Green Tea,app,Busan,3,5000,completed
A5,2026-11-22 02:00:00,무선 이어폰,web,Seoul,1,10000,completed
"""


def ledger_rows() -> list[Any]:
    with Ledger(get_settings().resolved_ledger_url) as ledger:
        return ledger.effects()


def posted_lines(payload: dict[str, Any]) -> list[str]:
    """The text of a Slack post, read off the emulator's record of it block by block."""
    lines: list[str] = []
    for block in payload["blocks"]:
        if block["type"] in ("header", "section"):
            lines += block["text"]["text"].splitlines()
        elif block["type"] == "context":
            lines += [line for item in block["elements"] for line in item["text"].splitlines()]
    return lines


def run_artifacts(flow_run_id: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV, encoding="utf-8")
    return path


def test_daily_report_dry_run_previews_slack_email_and_outbox_and_sends_nothing(
    orders_csv: Path, prefect_api: str, sandbox, moltbot_home: Path
) -> None:
    channels = save_sandbox_channels(sandbox)
    run = partial(
        daily_report, source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels
    )

    dry = run(dry_run=True)

    previews = {row["channel"]: row["preview"] for row in dry["deliveries"]}
    assert {name: shown["kind"] for name, shown in previews.items()} == {
        "demo-slack": "slack",
        "demo-email": "email",
        "outbox": "outbox",
    }
    assert all(row["status"] == "dry_run" for row in dry["deliveries"])
    # Nothing went out, nothing was written, nothing was recorded.
    assert sandbox.state.slack.posts == []
    assert sandbox.smtp.messages == []
    assert not (moltbot_home / "outbox").exists()
    assert ledger_rows() == []

    slack = previews["demo-slack"]
    assert slack["lines"][0] == "Daily report Mon 23 Nov 2026"
    assert any("₩35,000" in line for line in slack["lines"])

    email = previews["demo-email"]
    assert "Subject: Daily report Mon 23 Nov 2026" in email["lines"]
    assert "To: ***@example.com" in email["lines"]  # recipients masked like every log line
    html_file = Path(email["file"])
    assert html_file.is_relative_to(moltbot_home / "previews" / "daily-report")
    html = html_file.read_text(encoding="utf-8-sig")
    assert "₩35,000" in html and "cid:" not in html
    images = re.findall(r'src="([^"]+)"', html)
    assert images, "the chart is shown inline"
    for image in images:
        assert (html_file.parent / unquote(image)).read_bytes().startswith(b"\x89PNG")

    outbox = previews["outbox"]
    assert outbox["file"] is None
    assert any("daily-report-2026-11-23.md" in line for line in outbox["lines"])
    assert any("daily-report-2026-11-23.html" in line for line in outbox["lines"])

    printed = preview_lines(result_outcomes(dry))
    assert printed[0] == "demo-slack (slack)"
    assert "demo-email (email)" in printed and "outbox (outbox)" in printed
    assert f"    open: {html_file}" in printed

    real = run()

    assert {row["status"] for row in real["deliveries"]} == {"done"}
    [post] = sandbox.state.slack.posts
    assert posted_lines(post.payload) == slack["lines"]
    # The post's notification text says nothing the previewed blocks do not.
    assert set(post.payload["text"].splitlines()) <= set(slack["lines"])
    [mail] = sandbox.smtp.messages
    assert f"Subject: {mail.subject}" in email["lines"]


def test_preview_is_masked_names_fallbacks_and_records_nothing(
    make_runtime, ledger: Ledger, sandbox
) -> None:
    message = Message(
        key="alerts:preview",
        automation="alerts",
        title="Card declined",
        text="Customer kim@example.com called from 010-1234-5678; token=abcd1234efgh",
    )
    intent = message_intent(message, Route(("team-slack", "ops-email", "ops-outbox")))
    found = Intent(
        key="alerts:found",
        automation="alerts",
        kind="jira_issue",
        target="jira:OPS",
        payload=None,
        route=Route(("team-slack",)),
        known_remote_id="OPS-7",
    )

    [outcome, recorded] = perform([intent, found], make_runtime(), dry_run=True)

    assert outcome.status == "dry_run" and outcome.preview is not None
    assert outcome.preview.destination == "team-slack"
    assert outcome.preview.fallbacks == ["ops-email", "ops-outbox"]
    assert outcome.preview.lines == ["Customer ***@example.com called from ***; token=***"]
    assert recorded.preview is not None and "OPS-7" in recorded.preview.lines[0]
    assert sandbox.state.slack.posts == [] and sandbox.smtp.messages == []
    assert ledger.effects() == []


def test_ticket_creation_dry_run_previews_jira_fields_and_creates_nothing(
    prefect_api: str, sandbox, jira_credentials, tmp_path: Path
) -> None:
    (tmp_path / "moltbot.toml").write_bytes((ROOT / "moltbot.toml").read_bytes())
    mappings = load_mappings(ProjectConfig.load(), locale="ko")
    events = str(ROOT / "flows" / "ticket_creation" / "examples" / "events.jsonl")
    items = read_event_items.fn(None, events, mappings=mappings, mapping=None, timezone=TIMEZONE)
    drafts = draft_tickets.fn(items, timezone=TIMEZONE, locale="ko")
    plan = plan_drafts(drafts, {}, {})
    body = partial(comment_body, locale="ko", timezone=TIMEZONE)

    # In a flow run, as the ticket-creation flow calls it (its logs and artifact need one).
    outcomes = flow(dry_run_effects)(plan, jira_credentials, "sandbox-jira", body=body)

    assert sandbox.state.jira.issues() == []
    assert ledger_rows() == []
    issues = [o for o in outcomes if o.preview is not None and o.preview.kind == "jira_issue"]
    assert len(issues) == len(plan.having("create"))
    first = issues[0].preview
    assert first is not None and first.destination == "jira:sandbox-jira"
    draft = plan.having("create")[0].draft
    assert first.lines[:2] == [
        f"project: OPS · type: {draft.fields['issuetype']} · priority: {draft.fields['priority']}",
        f"summary: {draft.summary}",
    ]
    assert f"labels: {', '.join(draft.fields['labels'])}" in first.lines
    assert "components: Payments" in first.lines
    assert first.lines[first.lines.index("description:") + 1] == "  결제가 실패했습니다."
    assert "minji.kim" not in str([o.preview for o in outcomes])
    comments = [o for o in outcomes if o.preview is not None and o.preview.kind == "jira_comment"]
    assert comments and comments[0].preview.lines[0].startswith("comment on <issue of d")


def test_form_digest_dry_run_previews_the_notion_outline(
    prefect_api: str, sandbox, sandbox_blocks: list[str]
) -> None:
    spreadsheet_id = sandbox.state.sheets.create_spreadsheet(
        SAMPLE_FORM_NAME, {SAMPLE_FORM_WORKSHEET: sample_form_sheet(1)}
    )

    state = form_digest(
        sheets_block="sandbox-sheets",
        spreadsheet_id=spreadsheet_id,
        worksheet=SAMPLE_FORM_WORKSHEET,
        form_name=SAMPLE_FORM_NAME,
        channels=["outbox"],
        notion_block="sandbox-notion",
        notion_database_id=SANDBOX_DIGEST_DATABASE_ID,
        required_columns=list(REQUIRED_COLUMNS),
        nps_column=NPS_COLUMN,
        skip_columns=list(PERSONAL_COLUMNS),
        dry_run=True,
        return_state=True,
    )

    assert state.result()["notion"]["status"] == "dry_run"
    assert sandbox.state.notion.pages(SANDBOX_DIGEST_DATA_SOURCE_ID) == []
    [shown] = [
        artifact.data
        for artifact in run_artifacts(state.state_details.flow_run_id)
        if artifact.description == "Dry run: what would go out"
        and "notion:sandbox-notion" in str(artifact.data)
    ]
    assert "notion:sandbox-notion (notion_page)" in shown
    assert f"Name: {SAMPLE_FORM_NAME} digest 2026-11-20..2026-11-22" in shown
    assert "Responses: 22" in shown
    assert re.search(r"blocks \(\d+\):", shown)
    assert "  ## 관심 분야" in shown
    assert ledger_rows() == []


def test_a_plain_text_email_previews_its_text_and_the_outbox_writes_nothing(
    destinations, ops_folder: Path, moltbot_home: Path, sandbox
) -> None:
    message = Message(
        key="alerts:재고",
        automation="alerts",
        title="재고 부족: 녹차",
        text="녹차 재고가 3개 남았습니다.\n담당: lee@example.com",
    )
    intents = [
        message_intent(message, Route(("ops-email",))),
        message_intent(message, Route(("ops-outbox",))),
    ]

    # No ledger at all: a dry run claims and records nothing, so it never opens one.
    runtime = EffectsRuntime(ledger=None, executors=destinations)  # type: ignore[arg-type]
    [mail, files] = perform(intents, runtime, dry_run=True)

    assert mail.preview is not None and files.preview is not None
    assert mail.preview.lines[0] == "Subject: 재고 부족: 녹차"
    assert mail.preview.lines[-2:] == ["  녹차 재고가 3개 남았습니다.", "  담당: ***@example.com"]
    text_file = Path(str(mail.preview.file))
    assert text_file.parent == moltbot_home / "previews" / "alerts"
    assert text_file.read_text(encoding="utf-8-sig").endswith("담당: lee@example.com\n")
    assert files.preview.lines[1].startswith("  alerts-재고.md (")
    assert not ops_folder.exists()
    assert sandbox.smtp.messages == []
    assert preview_lines([mail, files])[0] == "ops-email (email)"


def test_previews_speak_the_runs_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    from moltbot.effects.preview import jira_issue_lines, preview_lines

    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "환불 요청"}

    lines = jira_issue_lines(fields)
    shown = preview_lines(
        [
            {
                "status": "dry_run",
                "key": "k",
                "kind": "jira_issue",
                "label": "결제 실패",
                "preview": {"destination": "jira", "kind": "jira", "lines": lines,
                            "file": None, "fallbacks": ["outbox"]},
            }
        ]
    )  # fmt: skip

    assert lines[0] == "프로젝트: OPS · 유형: Task · 우선순위: -"
    assert lines[1] == "요약: 환불 요청"
    assert shown[-1].strip() == "실패하면: outbox"
