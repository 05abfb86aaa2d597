"""The service-health flow end to end: real Prefect API, sandbox targets and Slack, ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blocks import HttpHeaders, SlackIncomingWebhook
from flows.service_health.flow import service_health
from moltbot.blockdocs import save_block_document
from moltbot.cli import app
from moltbot.errors import DeliveryFailed, InputError
from moltbot.state.ledger import Ledger
from moltbot.state.service_health import ServiceHealthStore
from tests.ledger_checks import assert_only_the_failed_run_is_audited

pytestmark = pytest.mark.slow

ROUTES = {"down": ["health-slack"]}
SECRET = "hk-91c4e7a2d05f3b68"


@pytest.fixture
def slack(prefect_api: str, sandbox) -> str:
    """A Slack webhook on the sandbox for the alerts."""
    url = sandbox.slack_webhook_url("health")
    save_block_document(SlackIncomingWebhook(url=url), "health-slack")
    return url


def write_config(sandbox, *services: str, extra: str = "") -> None:
    """A moltbot.toml in the test's working directory checking the named sandbox targets."""
    tables = [
        f'[monitoring.services.{name}]\nurl = "{sandbox.base_url}/targets/{name}"\n{extra}'
        for name in services
    ]
    Path("moltbot.toml").write_text("\n".join(tables), encoding="utf-8")


def run(**params):
    params.setdefault("channels_by_severity", ROUTES)
    return service_health(**params)


def posts(sandbox, url: str) -> list[str]:
    """The header and section text of every post to `url`, one string per post."""
    return [
        "\n".join(
            block["text"]["text"]
            for block in post.payload["blocks"]
            if block["type"] in ("header", "section")
        )
        for post in sandbox.state.slack.messages_for(url)
    ]


def stored() -> dict[str, tuple[str, int]]:
    with Ledger.from_settings() as ledger:
        states = ServiceHealthStore(ledger, "service-health").read()
    return {name: (health.state, health.failures) for name, health in states.items()}


def test_down_after_three_failures_once_then_one_recovery(slack, sandbox):
    write_config(sandbox, "api", "web")
    sandbox.state.targets.set("api", "down")

    runs = [run() for _ in range(4)]
    sandbox.state.targets.set("api", "up")
    back = run()
    again = run()

    assert [len(r["transitions"]) for r in runs] == [0, 0, 1, 0]
    [down] = runs[2]["transitions"]
    assert (down["severity"], down["service"], down["from"], down["to"]) == (
        "down",
        "api",
        "UNKNOWN",
        "DOWN",
    )
    assert runs[3]["counts"] == {"UP": 1, "DEGRADED": 0, "DOWN": 1, "UNKNOWN": 0}
    [recovered] = back["transitions"]
    assert (recovered["severity"], recovered["from"], recovered["to"]) == (
        "recovered",
        "DOWN",
        "UP",
    )
    assert again["transitions"] == [] and again["deliveries"] == []
    texts = posts(sandbox, slack)
    assert len(texts) == 2
    assert texts[0].startswith("Down: api\n*1 service down*")
    assert "*api*: unexpected status 503 · 3 failed checks in a row since" in texts[0]
    assert texts[1].startswith("Recovered: api\n*1 service recovered*")
    assert "*api*: back up after" in texts[1]
    assert stored() == {"api": ("UP", 0), "web": ("UP", 0)}
    # Every run checked both services once.
    assert len(sandbox.state.targets.requests_to("api")) == 6
    assert len(sandbox.state.targets.requests_to("web")) == 6


def test_a_slow_answer_is_degraded_once(slack, sandbox, monkeypatch):
    # One fake clock for the target's delay and the check's latency: nothing is waited out.
    from tests.tasks.test_http_checks import Clock

    clock = Clock()
    monkeypatch.setattr("tasks.http_checks.LATENCY_CLOCK", clock)
    monkeypatch.setattr(sandbox.state.targets, "sleep", clock.sleep)
    write_config(sandbox, "api", extra="latency_ms = 50\n")
    sandbox.state.targets.set("api", "slow", delay_ms=250)

    first = run()
    second = run()

    assert [(t["severity"], t["to"]) for t in first["transitions"]] == [("degraded", "DEGRADED")]
    assert first["checks"][0]["latency_ms"] >= 250
    assert second["transitions"] == []
    [text] = posts(sandbox, slack)
    assert text.startswith("Slow: api")
    assert "above 50 ms" in text


def test_a_dead_slack_delivery_keeps_the_state_and_is_sent_once_after_replay(slack, sandbox):
    write_config(sandbox, "api", extra="failures_to_down = 1\n")
    sandbox.state.targets.set("api", "down")
    sandbox.state.slack.inject_fault(503, count=None)

    with pytest.raises(DeliveryFailed) as first:
        run()
    with pytest.raises(DeliveryFailed) as second:
        run()

    statuses = [[d["status"] for d in e.value.result["deliveries"]] for e in (first, second)]
    assert statuses == [["dead"], ["dead"]]
    # The same change, hence the same key: the dead letter is not sent again by the run.
    assert first.value.result["deliveries"][0]["key"] == second.value.result["deliveries"][0]["key"]
    assert stored() == {} and posts(sandbox, slack) == []

    sandbox.state.slack.clear_faults()
    replayed = CliRunner().invoke(app, ["outbox", "replay", "--all", "--json"])
    assert replayed.exit_code == 0, replayed.output
    assert [row["status"] for row in json.loads(replayed.stdout)] == ["done"]
    settled = run()
    saved = stored()
    quiet = run()

    assert [d["status"] for d in settled["deliveries"]] == ["already_done"]
    assert settled["states_saved"] == 1 and saved == {"api": ("DOWN", 1)}
    assert quiet["deliveries"] == []
    assert len(posts(sandbox, slack)) == 1


def test_secret_headers_arrive_and_appear_in_no_log_artifact_or_result(slack, sandbox):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    HttpHeaders(headers={"X-Api-Key": SECRET}).save("health-headers", overwrite=True)
    write_config(sandbox, "api", extra='headers_block = "health-headers"\nfailures_to_down = 1\n')
    sandbox.state.targets.set("api", "up", required_headers={"X-Api-Key": SECRET})

    state = run(return_state=True)
    result = state.result()
    sandbox.state.targets.set("api", "down", required_headers={"X-Api-Key": SECRET})
    down = run()

    assert result["checks"][0]["status_code"] == 200 and result["counts"]["UP"] == 1
    assert [t["to"] for t in down["transitions"]] == ["DOWN"]
    assert all("x-api-key" in r.header_names for r in sandbox.state.targets.requests_to("api"))
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
        ids = [a["id"] for a in (*result["artifacts"], *down["artifacts"])]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=ids))
        )
        parameters = client.read_flow_run(state.state_details.flow_run_id).parameters
    assert logs and len(artifacts) == 4
    seen = [
        json.dumps(result),
        json.dumps(down),
        json.dumps(parameters),
        *(log.message for log in logs),
        *(json.dumps(a.data) for a in artifacts),
        *(json.dumps(p.payload) for p in sandbox.state.slack.posts),
    ]
    assert not [text for text in seen if SECRET in text]


def test_the_status_table_has_one_row_per_service_with_korean_titles(slack, sandbox, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    write_config(sandbox, "api", "web", extra="failures_to_down = 1\n")
    sandbox.state.targets.set("web", "drop")

    result = run()

    assert [a["key"] for a in result["artifacts"]] == ["service-health", "service-health-status"]
    with get_client(sync_client=True) as client:
        summary, table = (
            client.read_artifacts(
                artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[a["id"]]))
            )[0]
            for a in result["artifacts"]
        )
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(r["서비스"], r["상태"], r["상태 코드"], r["원인"], r["연속 실패"]) for r in rows] == [
        ("api", "정상", "200", "", "0"),
        ("web", "장애", "", "응답 없이 연결 끊김", "1"),
    ]
    assert set(rows[0]) == {
        "서비스",
        "상태",
        "상태 코드",
        "응답 시간(ms)",
        "상태 시작",
        "원인",
        "연속 실패",
    }
    assert summary.data.startswith("# 서비스 상태\n\n현재 정상 1 · 지연 0 · 장애 1")
    [text] = posts(sandbox, slack)
    assert text.startswith("장애: web\n*서비스 1개에 장애가 발생했습니다*")
    assert "*web*: 응답 없이 연결이 끊김 · " in text and "1회 연속 실패" in text


def test_dry_run_shows_what_would_be_sent_and_saves_nothing(slack, sandbox):
    write_config(sandbox, "api", extra="failures_to_down = 1\n")
    sandbox.state.targets.set("api", "down")

    result = run(dry_run=True)

    assert [t["to"] for t in result["transitions"]] == ["DOWN"]
    assert [d["status"] for d in result["deliveries"]] == ["dry_run"]
    assert result["deliveries"][0]["preview"]
    assert [a["key"] for a in result["artifacts"]] == [None, None]
    assert sandbox.state.slack.posts == []
    assert stored() == {} and result["states_saved"] == 0


@pytest.mark.parametrize(
    ("config", "params", "message"),
    [
        (
            '[monitoring.services.api]\nurl = "ftp://x/?token=abc123def456"\n',
            {},
            "moltbot.toml line 2: [monitoring.services.api] url: must start with http",
        ),
        ("", {}, "no services to check: add [monitoring.services.<name>]"),
        (
            "",
            {"services": {"api": {"url": "http://127.0.0.1/", "headers_block": "nope"}}},
            "unknown HTTP Headers block 'nope'",
        ),
        (
            '[monitoring.services.api]\nurl = "http://127.0.0.1/"\n',
            {"channels_by_severity": {"outage": ["health-slack"]}},
            "unknown severity 'outage'",
        ),
    ],
    ids=["bad-url", "no-services", "no-block", "bad-severity"],
)
def test_bad_input_is_one_line_and_nothing_is_checked_or_sent(
    slack, sandbox, moltbot_home, config, params, message
):
    Path("moltbot.toml").write_text(config, encoding="utf-8")

    with pytest.raises(InputError) as raised:
        run(**params)

    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert "abc123def456" not in str(raised.value)
    assert sandbox.state.slack.posts == [] and sandbox.state.targets.requests == []
    assert_only_the_failed_run_is_audited(moltbot_home)


def test_the_services_parameter_replaces_the_file(slack, sandbox):
    write_config(sandbox, "api")
    services = {"other": {"url": f"{sandbox.base_url}/targets/other", "method": "HEAD"}}

    result = run(services=services)

    assert [c["service"] for c in result["checks"]] == ["other"]
    assert [r.method for r in sandbox.state.targets.requests] == ["HEAD"]


def test_the_recovery_replies_in_the_alerts_thread_on_a_slack_bot(prefect_api, sandbox):
    from blocks import SlackBot
    from moltbot.sandbox.slack_web import SANDBOX_BOT_TOKEN, SANDBOX_CHANNEL_ID

    SlackBot(
        bot_token=SANDBOX_BOT_TOKEN,
        channel=SANDBOX_CHANNEL_ID,
        base_url=f"{sandbox.base_url}/slack/api/",
    ).save("health-bot", overwrite=True)
    write_config(sandbox, "api", extra="failures_to_down = 1\n")
    bot_route = {"down": ["health-bot"]}

    sandbox.state.targets.set("api", "down")
    down = service_health(channels_by_severity=bot_route)
    still = service_health(channels_by_severity=bot_route)
    sandbox.state.targets.set("api", "up")
    back = service_health(channels_by_severity=bot_route)

    assert [len(r["transitions"]) for r in (down, still, back)] == [1, 0, 1]
    alert, reply = sandbox.state.slack.web.messages_in(SANDBOX_CHANNEL_ID)
    assert alert.thread_ts is None and reply.thread_ts == alert.ts
    assert "Recovered: api" in reply.text
    # The original alert now says it is over.
    assert alert.edits == 1 and alert.text.startswith("✅ Resolved: ")
    assert stored() == {"api": ("UP", 0)}
