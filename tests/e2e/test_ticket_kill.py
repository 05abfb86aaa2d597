"""A ticket-creation run SIGKILLed while Jira hangs before acting: the next run, started at once,
takes its claims over and creates each issue once; the killed run is marked Crashed, ops told once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deployments.serving import HEARTBEAT_SECONDS, HEARTBEAT_SETTING
from deployments.specs import MOLTBOT_TAG
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import SANDBOX_JIRA_BLOCK
from moltbot.sandbox.kit import DEFAULT_HANG_SECONDS
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH
from moltbot.state.ledger import EffectStatus, Ledger
from tasks.jira import DEDUP_LABEL_PREFIX
from tests.e2e.crash import (
    WINDOW_SECONDS,
    detector_actions,
    flow_run,
    heartbeats,
    ops_posts_naming,
)
from tests.e2e.servers import PrefectServer, background, moltbot_command, wait_for

pytestmark = pytest.mark.slow

AUTOMATION = "ticket-creation"
EVENTS = 12
# The kit's hang (60 s) is longer than the Jira block's read timeout (10 s), so the client would
# give up first; the kill comes within seconds of the request's arrival, and the test ends the
# hold itself (`release_held`) once it no longer needs it: nothing waits the hang out.
HANG_SECONDS = DEFAULT_HANG_SECONDS
REPOSITORY = Path(__file__).resolve().parents[2]

# `moltbot run` tags nothing; a deployment's runs carry the `moltbot` tag, which the crash
# detector and the failure alert filter on. So the run to kill is started as a served run
# would be: the same entry point as the CLI, inside `tags(moltbot)`.
TAGGED_RUN = """
import sys
from prefect import tags
from moltbot.cli import run_automation
with tags(sys.argv[1]):
    run_automation(sys.argv[2], {"events_file": sys.argv[3], "jira_block": sys.argv[4]})
"""


def test_a_run_killed_while_jira_hangs_before_acting_is_taken_over_at_once_and_crashes(
    prefect_server: PrefectServer,
    sandbox: Sandbox,
    detector: str,
    workdir: Path,
    moltbot_home: Path,
) -> None:
    api = prefect_server.api_url
    jira = sandbox.state.jira
    shutil.copy(REPOSITORY / "moltbot.toml", workdir / "moltbot.toml")
    events_file = workdir / "events.jsonl"
    events_file.write_text(
        "".join(json.dumps(payment_failed(n), ensure_ascii=False) + "\n" for n in range(EVENTS)),
        encoding="utf-8",
    )
    ledger_url = f"sqlite:///{moltbot_home / 'ledger.sqlite3'}"
    env = prefect_server.env(
        **{HEARTBEAT_SETTING: str(HEARTBEAT_SECONDS)},
        MOLTBOT_HOME=str(moltbot_home),
        MOLTBOT_LEDGER_URL=ledger_url,
    )
    # Jira holds the bulk create and answers 504 later, having done nothing.
    jira.core.inject_fault(
        kind="hang", seconds=HANG_SECONDS, method="POST", path="issue/bulk", count=1
    )

    first_log = workdir / "first-run.log"
    tagged = [sys.executable, "-c", TAGGED_RUN, MOLTBOT_TAG, AUTOMATION, str(events_file),
              SANDBOX_JIRA_BLOCK]  # fmt: skip
    with background(tagged, env=env, cwd=workdir, log=first_log) as first:

        def bulk_arrived() -> bool:
            if first.poll() is not None:
                raise AssertionError(f"the first run ended: {first_log.read_text()[-3000:]}")
            # The hang fault is used up when the request arrives; it is logged only when answered.
            return not jira.core.pending_faults

        wait_for(bulk_arrived, what="the first run's bulk create to reach Jira")
        claimed = ledger_rows(ledger_url)
        [killed_id] = {row.flow_run_id for row in claimed}
        assert len(wait_for(lambda: heartbeats(api, killed_id), what="its first heartbeat")) == 1
        # Jira has not acted: no bulk create answered, no issue (the client's read timeout,
        # 10 s, has not run out either, so nothing was re-sent).
        assert first.poll() is None
        assert jira.core.count("POST", "issue/bulk") == 0
        assert jira.issues() == []
        os.killpg(first.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    # Every issue and the occurrence that creates it claimed by the killed run, none recorded.
    assert Counter(row.status for row in claimed) == {EffectStatus.PENDING: 2 * EVENTS}
    first_requests = len(jira.core.requests)
    jira.core.clear_faults()

    # At once, the same command a person would type, with the same home, ledger and config.
    second = run_cli(env, workdir, events_file)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout)

    issues = jira.issues()
    labels = Counter(
        label for issue in issues for label in issue.labels if label.startswith(DEDUP_LABEL_PREFIX)
    )
    assert len(issues) == EVENTS
    assert set(labels) == {draft["label"] for draft in result["drafts"]}
    assert set(labels.values()) == {1}
    assert sorted(c["key"] for c in result["created"]) == sorted(i.key for i in issues)
    assert {c["recovered"] for c in result["created"]} == {False}
    assert (result["failed"], result["in_progress"], result["commented"]) == ([], [], [])
    assert all(issue.created >= killed_at for issue in issues)
    # The killed run's claims were taken over at once (a second attempt by this run), not
    # waited for: the lease (15 min) was far from over, and a wait would have ended `held`.
    after_second = ledger_rows(ledger_url)
    tickets = [row for row in after_second if row.kind == "ticket"]
    assert Counter(row.status for row in tickets) == {EffectStatus.DONE: 2 * EVENTS}
    issue_rows = [row for row in tickets if row.key.endswith(":jira:OPS")]
    assert len(issue_rows) == EVENTS
    assert {row.attempts for row in issue_rows} == {2}
    assert {row.remote_id for row in issue_rows} == {issue.key for issue in issues}
    [second_id] = {row.flow_run_id for row in issue_rows}
    assert second_id != killed_id
    # The occurrence rows were taken over with their issues: the audit names the run that did it.
    assert {row.flow_run_id for row in tickets} == {second_id}
    # One bulk create answered normally (this run's, 12 issues); the held one is still held.
    assert [r.status for r in fresh_bulk_creates(jira)] == [201]
    second_requests = answered(jira)[first_requests:]

    third = run_cli(env, workdir, events_file)
    assert third.returncode == 0, third.stderr[-3000:]
    again = json.loads(third.stdout)
    assert (again["created"], again["unchanged"]) == ([], EVENTS)
    third_requests = answered(jira)[first_requests + len(second_requests) :]
    assert {r.method for r in third_requests} == {"GET"}
    assert len(jira.issues()) == EVENTS

    # The detector marks the killed run Crashed; the failure alert tells ops, once.
    crashed = wait_for(
        lambda: (run := flow_run(api, killed_id))["state"]["type"] == "CRASHED" and run,
        what="the detector to mark the killed run Crashed",
    )
    assert crashed["state"]["message"].startswith(f"no heartbeat for {WINDOW_SECONDS} s")
    assert MOLTBOT_TAG in crashed["tags"]
    wait_for(
        lambda: detector_actions(api, detector, killed_id),
        what="the detector's action on the killed run to be recorded",
    )
    [alert] = wait_for(
        lambda: ops_posts_naming(sandbox, crashed["name"]),
        what="the crash alert in the sandbox's ops channel",
    )
    assert alert.text is not None
    assert alert.text.startswith(f"*moltbot: {AUTOMATION} run {crashed['name']} Crashed*")
    ops = sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)
    assert [post.text for post in ops] == [alert.text]
    assert flow_run(api, second_id)["state"]["type"] == "COMPLETED"

    # The held request ends as a 504, Jira having done nothing: two bulk creates arrived in all.
    # (Waited for also so that no request is still held when the session's sandbox stops.)
    jira.core.release_held()
    held = wait_for(
        lambda: [r for r in jira.core.requests_to("POST", "issue/bulk") if r.fault == "hang"],
        what="the held bulk create to be answered",
    )
    assert [r.status for r in held] == [504]
    assert jira.core.count("POST", "issue/bulk") == 2
    assert len(jira.issues()) == EVENTS

    print(
        "\nticket-kill figures:",
        json.dumps(
            {
                "issues_in_jira": len(issues),
                "bulk_creates": [
                    (r.status, r.fault) for r in jira.core.requests_to("POST", "issue/bulk")
                ],
                "jira_requests": {
                    "first_run_before_kill": first_requests,
                    "second_run": dict(Counter(f"{r.method} {r.path}" for r in second_requests)),
                    "third_run": dict(Counter(f"{r.method} {r.path}" for r in third_requests)),
                },
                "takeover_warnings": second.stderr.count("taking over an interrupted attempt"),
                "occurrence_rows_by_flow_run": dict(
                    Counter(
                        "killed" if row.flow_run_id == killed_id else "second"
                        for row in tickets
                        if ":seen:" in row.key
                    )
                ),
                "ledger_after_kill": _by_status(claimed),
                "ledger_after_second": _by_status(after_second),
                "ledger_after_third": _by_status(ledger_rows(ledger_url)),
                "killed_run": crashed["name"],
            },
            default=str,
        ),
    )


def payment_failed(n: int) -> dict[str, Any]:
    """A distinct `payment.failed` event (the shipped `payment-failed` mapping takes it)."""
    return {
        "id": f"pay-kill-{n:04d}",
        "type": "payment.failed",
        "occurred_at": f"2026-11-24T09:{n:02d}:00+09:00",
        "payload": {
            "order_id": f"K-{20000 + n}",
            "amount": 10000 + 1000 * n,
            "provider": "toss",
            "error_code": "CARD_DECLINED",
            "severity": "high",
            "customer_email": f"buyer{n}@example.com",
        },
    }


def run_cli(env: dict[str, str], cwd: Path, events_file: Path) -> subprocess.CompletedProcess[str]:
    """`moltbot run ticket-creation … --json` to its end."""
    command = moltbot_command("run", AUTOMATION, "--param", f"events_file={events_file}",
                              "--param", f"jira_block={SANDBOX_JIRA_BLOCK}", "--json")  # fmt: skip
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)


def fresh_bulk_creates(jira: Any) -> list[Any]:
    """The bulk creates Jira answered normally (not the held one)."""
    return [r for r in jira.core.requests_to("POST", "issue/bulk") if r.fault is None]


def answered(jira: Any) -> list[Any]:
    """Jira's request log without the held request (logged whenever its answer goes out)."""
    return [r for r in jira.core.requests if r.fault != "hang"]


def ledger_rows(url: str) -> list[Any]:
    with Ledger(url) as ledger:
        return ledger.effects(automation=AUTOMATION)


def _by_status(rows: list[Any]) -> dict[str, int]:
    return dict(Counter(str(row.status) for row in rows))
