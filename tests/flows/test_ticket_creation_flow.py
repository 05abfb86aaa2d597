"""The ticket-creation flow end to end: real jira client, Jira and Sheets emulators, Prefect API."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jira as jira_client
import pytest
from typer.testing import CliRunner

from flows.ticket_creation.flow import ticket_creation
from moltbot.cli import app
from moltbot.errors import DeliveryFailed, InputError, ServiceError
from moltbot.retrying import recorded_sleeps
from moltbot.sandbox import Sandbox
from moltbot.sandbox.jira import JiraState
from moltbot.state.ledger import EffectStatus, Ledger
from tasks.jira import dedup_label
from tests.sandbox.helpers import jira_block

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
SHIPPED_CONFIG = ROOT / "moltbot.toml"
EXAMPLE_EVENTS = ROOT / "flows" / "ticket_creation" / "examples" / "events.jsonl"
JIRA = "sandbox-jira"
ALEX = "712020:00000000-0000-4000-8000-00000000a002"
MINJI = "712020:00000000-0000-4000-8000-00000000a003"
FORM_HEADER = ["타임스탬프", "이름", "이메일", "연락처", "문의 유형", "긴급도", "제목", "내용"]
CATEGORIES = ["결제 문의", "버그 신고", "일반 문의"]
URGENCY = ["매우 긴급", "긴급", "보통", "낮음"]

# A small events mapping for tests that need their own rules (written per test).
EVENTS_MAPPING = """
[ticket_creation.mappings.alerts]
source = "events"
event_types = ["alert.fired"]
project = "OPS"
issue_type = "Incident"
summary = "{{ payload.title }}"
description = "보고자: {{ payload.reporter }}"
components = ["Web"]

[ticket_creation.mappings.alerts.priority]
from = "{{ payload.severity }}"
map = { critical = "Highest", warning = "Medium", bogus = "Urgent" }
"""


@pytest.fixture
def jira(sandbox: Sandbox, sandbox_blocks: list[str]) -> JiraState:
    return sandbox.state.jira


@pytest.fixture
def shipped_config(tmp_path: Path) -> Path:
    """The repository's moltbot.toml, in the test's working directory."""
    return Path(shutil.copy(SHIPPED_CONFIG, tmp_path / "moltbot.toml"))


@pytest.fixture
def events_mapping(tmp_path: Path) -> Path:
    path = tmp_path / "moltbot.toml"
    path.write_text(EVENTS_MAPPING, encoding="utf-8")
    return path


def alert(n: int, *, at: str = "2026-11-24T09:00:00+09:00", **payload: Any) -> dict[str, Any]:
    values = {"title": f"결제 API 오류 {n}", "severity": "warning", "reporter": "ops@example.com"}
    return {
        "id": f"alert-{n}",
        "type": "alert.fired",
        "occurred_at": at,
        "payload": values | payload,
    }


def form_rows(count: int) -> list[list[str]]:
    rows: list[list[str]] = [FORM_HEADER]
    for n in range(count):
        minute, second = divmod(n, 60)
        rows.append(
            [
                f"2026. 11. 24 오후 3:{minute:02d}:{second:02d}",
                f"고객{n}",
                f"customer{n}@example.com",
                f"010-1234-{n:04d}",
                CATEGORIES[n % 3],
                URGENCY[n % 4],
                f"주문 {n} 문의",
                f"주문 {n}번 관련 문의입니다. 연락처 010-9876-{n:04d}",
            ]
        )
    return rows


def count(jira: JiraState, method: str, path: str) -> int:
    return jira.core.count(method, path)


def ledger_effects() -> list:
    with Ledger.from_settings() as ledger:
        return ledger.effects(automation="ticket-creation")


def slack_posts(sandbox: Sandbox) -> list[str]:
    return [
        "\n".join(
            block["text"]["text"]
            for block in post.payload["blocks"]
            if block["type"] in ("header", "section")
        )
        for post in sandbox.state.slack.messages_for(sandbox.sandbox_webhook_url)
    ]


def run_killed_when(
    happened: Callable[[], bool], events_file: Path, prefect_api: str, cwd: Path, what: str
) -> None:
    """Run ticket-creation on `events_file` in a process and SIGKILL it once `happened`."""
    environment = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moltbot.cli", "run", "ticket-creation",
         "--param", f"events_file={events_file}", "--param", f"jira_block={JIRA}"],
        cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # The process ending is the bound: no clock decides the test.
        while not happened():
            assert process.poll() is None, f"the run ended before {what}"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- form answers


def test_120_form_answers_become_120_issues_in_3_bulk_requests_and_a_rerun_creates_none(
    jira: JiraState, sandbox: Sandbox, shipped_config: Path
) -> None:
    sheet = sandbox.state.sheets.create_spreadsheet(
        "고객 문의 (응답)", {"설문지 응답 시트1": form_rows(120)}
    )
    params = {
        "sheets_block": "sandbox-sheets",
        "spreadsheet_id": sheet,
        "worksheet": "설문지 응답 시트1",
        "jira_block": JIRA,
        "channels": ["sandbox-slack"],
    }

    result = ticket_creation(**params)

    assert len(result["created"]) == 120 and not result["failed"]
    assert count(jira, "POST", "issue/bulk$") == 3
    assert count(jira, "GET", "search/jql$") == 1
    assert result["window"] == {
        "rows": 120, "first_row": 2, "last_row": 121, "resumed": False, "realigned": False,
        "committed": True,
    }  # fmt: skip
    issues = {issue.key: issue for issue in jira.issues("OPS")}
    assert len(issues) == 120
    first = issues[result["created"][0]["key"]]
    assert first.summary == "[결제 문의] 주문 0 문의"
    assert (first.issue_type, first.priority, first.components) == (
        "Task",
        "Highest",
        ("Payments",),
    )
    assert first.assignee == ALEX
    assert first.due_date.isoformat() == "2026-11-24"  # 15:00 KST + 4 h SLA (Highest)
    assert "***@example.com" in first.description and "customer0@" not in first.description
    assert "010-1234-0000" not in first.description and "010-9876" not in first.description
    assert first.labels[:2] == ("support", "결제-문의")
    assert first.labels[2] == dedup_label(
        f"ticket-creation:{result['created'][0]['dedup_key']}:jira:OPS"
    )
    bug = issues[result["created"][1]["key"]]
    assert (bug.issue_type, bug.priority, bug.components, bug.assignee) == (
        "Bug", "High", ("Web",), MINJI,
    )  # fmt: skip
    general = issues[result["created"][2]["key"]]
    assert (general.issue_type, general.components, general.assignee) == (
        "Task",
        ("Support",),
        None,
    )
    assert general.due_date.isoformat() == "2026-11-27"  # Medium: 72 h
    done = [e for e in ledger_effects() if e.status == EffectStatus.DONE]
    assert len([e for e in done if e.kind == "ticket"]) == 240  # issue + creating occurrence
    assert [e.target for e in done if e.kind == "message"] == ["sandbox-slack"]
    assert not any("@" in e.key for e in done)  # no answer text in the ledger
    [post] = slack_posts(sandbox)
    assert post.startswith("Jira: 120 issues created")
    assert f"{sandbox.base_url}/jira/browse/OPS-1|OPS-1>" in post
    assert "customer0@" not in post

    jira.core.clear_requests()
    again = ticket_creation(**params)

    assert (again["created"], again["commented"], again["failed"]) == ([], [], [])
    assert jira.core.requests == []  # no new answers: nothing to search or create
    assert len(jira.issues()) == 120
    assert len(slack_posts(sandbox)) == 1


def test_60_new_answers_cost_one_search_and_two_bulk_creates_and_no_other_jira_request(
    jira: JiraState, sandbox: Sandbox, shipped_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[jira_client.JIRA] = []

    class CountedJIRA(jira_client.JIRA):
        """The real client, counted as it is built."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr("blocks.jira.JIRA", CountedJIRA)
    sheet = sandbox.state.sheets.create_spreadsheet("문의", {"응답": form_rows(60)})
    params = {"sheets_block": "sandbox-sheets", "spreadsheet_id": sheet, "worksheet": "응답"}

    result = ticket_creation(jira_block=JIRA, **params)

    assert len(result["created"]) == 60 and not result["failed"]
    assert len(built) == 1  # the dedup search and both bulk creates share the run's client
    received = Counter(
        (r.method, r.path.removeprefix("/rest/api/2/"), r.status) for r in jira.core.requests
    )
    # One client per run, which reads neither serverInfo nor the field list (every field is
    # named by id): the dedup search, then 50 + 10 drafts in two bulk creates.
    assert received == {("GET", "search/jql", 200): 1, ("POST", "issue/bulk", 201): 2}
    assert sum(received.values()) <= math.ceil(60 / 50) + 2


def test_a_revoked_token_fails_the_run_with_one_line_naming_the_block(
    jira: JiraState, sandbox: Sandbox, events_mapping: Path
) -> None:
    jira_block(sandbox.base_url, api_token="revoked-token-8c1d").save(
        "test-jira-revoked", overwrite=True
    )

    with pytest.raises(ServiceError) as raised:
        ticket_creation(events=[alert(1)], jira_block="test-jira-revoked")

    assert str(raised.value) == (
        "Jira block 'test-jira-revoked': 401 Client must be authenticated to access this "
        "resource. (check the block's e-mail and API token)"
    )
    # The first request of the run is its dedup search: refused once, not retried, no create.
    assert [(r.method, r.path, r.status) for r in jira.core.requests] == [
        ("GET", "/rest/api/2/search/jql", 401)
    ]
    assert jira.issues() == [] and ledger_effects() == []


def test_new_answers_after_the_watermark_only(
    jira: JiraState, sandbox: Sandbox, shipped_config: Path
) -> None:
    rows = form_rows(5)
    sheet = sandbox.state.sheets.create_spreadsheet("문의", {"응답": rows[:4]})
    params = {"sheets_block": "sandbox-sheets", "spreadsheet_id": sheet, "worksheet": "응답"}

    first = ticket_creation(jira_block=JIRA, **params)
    sandbox.state.sheets.set_values(sheet, "응답", rows)
    second = ticket_creation(jira_block=JIRA, **params)

    assert [c["item"] for c in first["created"]] == ["row 2", "row 3", "row 4"]
    assert [c["item"] for c in second["created"]] == ["row 5", "row 6"]
    assert len(jira.issues()) == 5


def test_a_refused_answer_holds_the_watermark_until_the_mapping_is_fixed(
    jira: JiraState, sandbox: Sandbox, shipped_config: Path
) -> None:
    shipped = shipped_config.read_text(encoding="utf-8")
    shipped_config.write_text(shipped.replace('"긴급" = "High"', '"긴급" = "Urgent"'), "utf-8")
    rows = form_rows(5)  # row 3 (n = 1) is 긴급
    sheet = sandbox.state.sheets.create_spreadsheet("문의", {"응답": rows[:4]})
    params = {"sheets_block": "sandbox-sheets", "spreadsheet_id": sheet, "worksheet": "응답"}

    with pytest.raises(DeliveryFailed) as raised:
        ticket_creation(jira_block=JIRA, **params)

    first = raised.value.result
    assert [c["item"] for c in first["created"]] == ["row 2", "row 4"]
    assert [(f["item"], f["error"]) for f in first["failed"]] == [
        ("row 3", "priority: The priority selected is invalid.")
    ]
    assert first["window"]["committed"] is False

    # Fixed, with a new answer meanwhile: the held window comes first, the new row waits.
    shipped_config.write_text(shipped, "utf-8")
    sandbox.state.sheets.set_values(sheet, "응답", rows)
    second = ticket_creation(jira_block=JIRA, **params)
    third = ticket_creation(jira_block=JIRA, **params)

    assert [c["item"] for c in second["created"]] == ["row 3"]
    assert second["unchanged"] == 2
    assert second["window"] | {} == {
        "rows": 3, "first_row": 2, "last_row": 4, "resumed": True, "realigned": False,
        "committed": True,
    }  # fmt: skip
    assert [c["item"] for c in third["created"]] == ["row 5", "row 6"]
    assert len(jira.issues()) == 5


# --------------------------------------------------------------------------- events


def test_example_events_create_3_issues_and_the_recurring_spike_a_comment(
    jira: JiraState, shipped_config: Path
) -> None:
    result = ticket_creation(events_file=str(EXAMPLE_EVENTS), jira_block=JIRA)

    assert [c["item"] for c in result["created"]] == [
        "event pay-20261124-0001 (payment.failed)",
        "event pay-20261124-0002 (payment.failed)",
        "event spike-checkout-api (error.spike)",
    ]
    [comment] = result["commented"]
    assert (comment["key"], comment["seen"]) == (result["created"][2]["key"], 2)
    spike = jira.issue(comment["key"])
    assert spike.summary == "오류 급증: checkout-api (840건/분)"
    [body] = [c.body for c in spike.comments]
    assert body.startswith("Seen again at 2026-11-24 10:35 KST (event spike-checkout-api")
    assert "2 times in total" in body and "610건/분" in body
    payment = jira.issue(result["created"][0]["key"])
    assert "***@example.com" in payment.description
    assert (payment.priority, payment.assignee) == ("High", ALEX)


def test_rerunning_the_same_events_creates_and_comments_nothing(
    jira: JiraState, shipped_config: Path
) -> None:
    ticket_creation(events_file=str(EXAMPLE_EVENTS), jira_block=JIRA)
    jira.core.clear_requests()

    again = ticket_creation(events_file=str(EXAMPLE_EVENTS), jira_block=JIRA)

    assert (again["created"], again["commented"], again["failed"]) == ([], [], [])
    assert again["unchanged"] == 4
    assert count(jira, "GET", "search/jql$") == 1
    assert count(jira, "POST", "") == 0
    assert len(jira.issues()) == 3


def test_a_recurring_event_gets_a_comment_not_a_new_issue(
    jira: JiraState, events_mapping: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    first = ticket_creation(events=[alert(1)], jira_block=JIRA)
    later = alert(1, at="2026-11-24T11:30:00+09:00", title="결제 API 오류 1 (재발)")

    second = ticket_creation(events=[alert(1), later], jira_block=JIRA)
    third = ticket_creation(
        events=[later, alert(1, at="2026-11-25T08:00:00+09:00")], jira_block=JIRA
    )

    [issue] = jira.issues()
    assert first["created"][0]["key"] == issue.key
    assert (second["created"], third["created"]) == ([], [])
    assert [(c["key"], c["seen"]) for c in second["commented"]] == [(issue.key, 2)]
    assert [(c["key"], c["seen"]) for c in third["commented"]] == [(issue.key, 3)]
    seen = "에 다시 발생했습니다 (event alert-1 (alert.fired)). 지금까지 총"
    assert [c.body.splitlines()[0] for c in issue.comments] == [
        f"2026-11-24 11:30 KST{seen} 2회입니다.",
        f"2026-11-25 08:00 KST{seen} 3회입니다.",
    ]
    assert issue.comments[0].body.endswith("결제 API 오류 1 (재발)")


def test_one_invalid_item_among_10_leaves_9_created_and_1_reported(
    jira: JiraState, events_mapping: Path
) -> None:
    events = [alert(n) for n in range(10)]
    events[6]["payload"]["severity"] = "bogus"  # maps to "Urgent", which Jira does not have

    with pytest.raises(DeliveryFailed) as raised:
        ticket_creation(events=events, jira_block=JIRA)

    result = raised.value.result
    assert len(result["created"]) == 9
    assert result["failed"] == [
        {
            "draft": "d7",
            "item": "event alert-6 (alert.fired)",
            "dedup_key": "event:alert.fired:alert-6",
            "error": "priority: The priority selected is invalid.",
            "transient": False,
        }
    ]
    assert "1 failure(s): event alert-6 (alert.fired): priority:" in str(raised.value)
    assert len(jira.issues()) == 9
    failed = {e.key for e in ledger_effects() if e.status == EffectStatus.FAILED}
    issue_key = "ticket-creation:event:alert.fired:alert-6:jira:OPS"
    assert {key.split(":seen:")[0] for key in failed} == {issue_key}
    assert len(failed) == 2  # the issue and its creating occurrence

    # The mapping is fixed: the rerun creates only the one that failed.
    events_mapping.write_text(EVENTS_MAPPING.replace('"Urgent"', '"High"'), encoding="utf-8")
    jira.core.clear_requests()
    fixed = ticket_creation(events=events, jira_block=JIRA)

    assert [c["item"] for c in fixed["created"]] == ["event alert-6 (alert.fired)"]
    assert (fixed["commented"], fixed["unchanged"]) == ([], 9)
    assert count(jira, "POST", "issue/bulk$") == 1
    assert jira.issue(fixed["created"][0]["key"]).priority == "High"
    assert len(jira.issues()) == 10


def test_429_on_the_bulk_create_waits_for_retry_after(
    jira: JiraState, events_mapping: Path
) -> None:
    jira.core.inject_fault(429, path="issue/bulk$", retry_after=1)

    with recorded_sleeps() as waits:
        result = ticket_creation(events=[alert(n) for n in range(3)], jira_block=JIRA)

    assert waits == [1.0]  # Jira's Retry-After honoured (recorded, not waited out)
    assert len(result["created"]) == 3
    assert [r.status for r in jira.core.requests if r.path.endswith("issue/bulk")] == [429, 201]


# --------------------------------------------------------------------------- crash safety


def test_a_dropped_connection_after_the_bulk_create_applied_creates_no_duplicate(
    jira: JiraState, events_mapping: Path
) -> None:
    jira.fail_after_apply(kind="drop", path="issue/bulk")

    first = ticket_creation(events=[alert(n) for n in range(5)], jira_block=JIRA)
    again = ticket_creation(events=[alert(n) for n in range(5)], jira_block=JIRA)

    assert len(first["created"]) == 5 and not first["failed"]
    assert (again["created"], again["unchanged"]) == ([], 5)
    assert len(jira.issues()) == 5
    # One bulk request, whose answer was lost: the label search found its issues.
    assert count(jira, "POST", "issue/bulk$") == 1
    assert count(jira, "GET", "search/jql$") == 3  # run 1: dedup + check; run 2: dedup


def test_a_run_killed_after_jira_created_the_issues_is_recorded_not_repeated(
    jira: JiraState, sandbox: Sandbox, events_mapping: Path, prefect_api: str, tmp_path: Path
) -> None:
    events = [alert(n) for n in range(3)]
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in events) + "\n")
    # Jira creates the issues, then the answer never comes: the process is killed meanwhile.
    jira.fail_after_apply(kind="hang", seconds=20, path="issue/bulk")
    run_killed_when(
        lambda: len(jira.issues()) == 3, events_file, prefect_api, tmp_path, "Jira created them"
    )
    pending = {e.key for e in ledger_effects() if e.status == EffectStatus.PENDING}
    assert len(pending) == 6  # 3 issues and the 3 occurrences that create them
    jira.core.clear_requests()

    result = ticket_creation(events_file=str(events_file), jira_block=JIRA)

    assert [(c["key"], c["recovered"]) for c in result["created"]] == [
        ("OPS-1", True), ("OPS-2", True), ("OPS-3", True),
    ]  # fmt: skip
    assert result["commented"] == []
    assert count(jira, "POST", "") == 0
    assert len(jira.issues()) == 3
    assert {e.status for e in ledger_effects()} == {EffectStatus.DONE}
    assert ticket_creation(events_file=str(events_file), jira_block=JIRA)["unchanged"] == 3


def test_a_run_killed_after_jira_added_a_comment_leaves_one_comment(
    jira: JiraState, sandbox: Sandbox, events_mapping: Path, prefect_api: str, tmp_path: Path
) -> None:
    ticket_creation(events=[alert(1)], jira_block=JIRA)
    events_file = tmp_path / "events.jsonl"
    recurrence = alert(1, at="2026-11-24T11:30:00+09:00")
    events_file.write_text(json.dumps(recurrence, ensure_ascii=False) + "\n")
    # Jira adds the comment, then the answer never comes: the process is killed meanwhile.
    jira.fail_after_apply(kind="hang", seconds=20, path=r"/comment$")
    [issue] = jira.issues()
    run_killed_when(
        lambda: bool(jira.issue(issue.key).comments),
        events_file,
        prefect_api,
        tmp_path,
        "Jira added the comment",
    )
    [pending] = [e for e in ledger_effects() if e.status == EffectStatus.PENDING]
    assert pending.kind == "comment"

    # At once: the killed holder is gone, so its claim is taken over without waiting for the
    # lease, and the comment is looked up by its marker before anything is posted.
    result = ticket_creation(events_file=str(events_file), jira_block=JIRA)
    again = ticket_creation(events_file=str(events_file), jira_block=JIRA)

    assert len(jira.issue(issue.key).comments) == 1
    assert [(c["key"], c["recovered"]) for c in result["commented"]] == [(issue.key, True)]
    assert result["failed"] == [] and again["commented"] == [] and again["unchanged"] == 1
    assert {e.status for e in ledger_effects()} == {EffectStatus.DONE}


# --------------------------------------------------------------------------- dry run, bad input


def test_dry_run_searches_but_creates_records_and_sends_nothing(
    jira: JiraState, sandbox: Sandbox, shipped_config: Path
) -> None:
    ticket_creation(events=json_lines(EXAMPLE_EVENTS)[:1], jira_block=JIRA)
    before = ledger_effects()
    jira.core.clear_requests()

    result = ticket_creation(
        events_file=str(EXAMPLE_EVENTS), jira_block=JIRA, channels=["sandbox-slack"], dry_run=True
    )

    # The first event created OPS-1 already; the spike's second occurrence would comment.
    assert [d["action"] for d in result["drafts"]] == ["done", "create", "create", "comment"]
    assert result["drafts"][0]["issue_key"] == "OPS-1"
    assert result["drafts"][1]["fields"]["priority"] == "Highest"
    assert (result["created"], result["commented"], result["deliveries"]) == ([], [], [])
    assert {r.method for r in jira.core.requests} == {"GET"}
    assert len(jira.issues()) == 1
    assert ledger_effects() == before
    assert slack_posts(sandbox) == []


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_dry_run_without_a_jira_block_connects_to_nothing(
    jira: JiraState, shipped_config: Path
) -> None:
    result = ticket_creation(events_file=str(EXAMPLE_EVENTS), dry_run=True)

    assert [d["action"] for d in result["drafts"]] == ["create", "create", "create", "comment"]
    assert result["jira_checked"] is False
    assert jira.core.requests == []


def test_a_dry_run_is_named_tagged_and_its_artifacts_marked(
    jira: JiraState, events_mapping: Path
) -> None:
    import json as json_module

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    state = ticket_creation(
        events=[alert(1), alert(2)], mapping="alerts", dry_run=True, return_state=True
    )
    result = state.result()

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        summary, table = (
            client.read_artifacts(
                artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact["id"]]))
            )[0]
            for artifact in result["artifacts"]
        )
    assert run.name.startswith("ticket-creation 20")
    assert run.name.endswith(" (2 events) (dry run)")
    assert {"ticket-creation", "dry-run"} <= set(run.tags)
    assert summary.description.startswith("DRY RUN — ticket-creation 20")
    assert summary.description.endswith(" · 2 events · 2 drafts")
    rows = json_module.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(row["Draft"], row["Action"]) for row in rows] == [
        ("d1", "to create"),
        ("d2", "to create"),
    ]


@pytest.mark.parametrize(
    ("config", "params", "message"),
    [
        (
            EVENTS_MAPPING.replace('components = ["Web"]', 'components = ["Web"]\npriorty = "x"'),
            {},
            "mapping 'alerts' (moltbot.toml line 10): priorty: unknown field (known: source,",
        ),
        (
            EVENTS_MAPPING.replace("{{ payload.title }}", "{{ payload.title }"),
            {},
            "mapping 'alerts' (moltbot.toml line 7): summary: template error: unexpected '}'",
        ),
        (
            EVENTS_MAPPING.replace("{{ payload.reporter }}", "{{ payload.owner }}"),
            {},
            "mapping 'alerts' (moltbot.toml line 8): description: the event's payload has no "
            "'owner' (it has: 'title', 'severity', 'reporter') (event alert-1 (alert.fired))",
        ),
        (EVENTS_MAPPING, {"mapping": "nope"}, "unknown mapping 'nope' (configured: alerts)"),
        (EVENTS_MAPPING, {"jira_block": "nope"}, "unknown Jira Credentials block 'nope' (saved:"),
        (
            EVENTS_MAPPING,
            {"events": [{"id": 1, "type": "alert.fired", "payload": {}}]},
            "events[0]: missing 'occurred_at' (an event has id, type, occurred_at, payload)",
        ),
        (
            EVENTS_MAPPING,
            {"events": [alert(1) | {"type": "deploy.done"}]},
            "events[0]: no mapping takes event type 'deploy.done' (mapped types: alert.fired)",
        ),
        ("", {}, "no ticket mappings configured"),
    ],
)
def test_bad_input_fails_clearly_before_any_effect(
    jira: JiraState, tmp_path: Path, config: str, params: dict[str, Any], message: str
) -> None:
    (tmp_path / "moltbot.toml").write_text(config, encoding="utf-8")
    given = {"events": [alert(1), alert(2)], "jira_block": JIRA} | params

    with pytest.raises(InputError) as raised:
        ticket_creation(**given)

    assert message in str(raised.value)
    assert jira.core.requests == []
    assert ledger_effects() == []


def test_cli_dry_run_json_prints_the_drafts(shipped_config: Path, prefect_api: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            "ticket-creation",
            "--param",
            f"events_file={EXAMPLE_EVENTS}",
            "--dry-run",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [d["mapping"] for d in document["drafts"]] == [
        "payment-failed", "payment-failed", "error-spike", "error-spike",
    ]  # fmt: skip
    assert document["drafts"][0]["fields"]["summary"] == "결제 실패: 주문 A-10023 (₩59,000, toss)"
    assert document["created"] == []


def test_cli_bad_input_exits_2_with_one_line(shipped_config: Path, prefect_api: str) -> None:
    result = CliRunner().invoke(
        app, ["run", "ticket-creation", "--param", "events_file=nope.jsonl", "--dry-run"]
    )

    assert result.exit_code == 2
    assert result.stderr.strip() == "error: events_file 'nope.jsonl' does not exist"


def test_events_read_from_the_webhook_inbox_become_issues_and_unknown_ids_fail_first(
    jira: JiraState, shipped_config: Path
) -> None:
    from datetime import UTC, datetime

    from moltbot.state.inbox import Inbox

    [record] = [json.loads(line) for line in EXAMPLE_EVENTS.read_text().splitlines()[:1]]
    with Ledger.from_settings() as ledger:
        entry, _ = Inbox(ledger).accept("stripe", record, received_at=datetime.now(UTC))

    with pytest.raises(InputError, match="no webhook inbox entry 'nope'"):
        ticket_creation(inbox_ids=[entry.id, "nope"], jira_block=JIRA)
    assert count(jira, "POST", "") == 0
    result = ticket_creation(inbox_ids=[entry.id], jira_block=JIRA)

    [issue] = jira.issues()
    assert result["created"][0]["key"] == issue.key
    assert issue.summary == "결제 실패: 주문 A-10023 (₩59,000, toss)"
    assert "minji.kim@example.com" not in (issue.description or "")
