"""Client-side rate limits: shared SQL buckets keep every API under its limit, before the 429."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import pytest
from notion_client import APIResponseError
from sqlalchemy import create_engine, select, text
from typer.testing import CliRunner

from blocks import SlackIncomingWebhook
from moltbot.cli import app
from moltbot.config.ratelimits import RateLimits
from moltbot.config.settings import get_settings
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_buckets_table, rate_gate
from moltbot.sandbox.kit import TokenBucketLimiter
from moltbot.sandbox.notion import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    SANDBOX_DIGEST_DATA_SOURCE_ID,
    SANDBOX_NOTION_TOKEN,
)
from moltbot.state.ledger import Ledger

# Far from zero, like the epoch seconds of the real clock.
START = 1_800_000_000.0


class FakeTime:
    """One clock for the emulators' rate models and the limiter: sleeping moves it on."""

    def __init__(self, *, advances: bool = True) -> None:
        self.now = START
        self.slept: list[float] = []
        self._advances = advances
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            if self._advances:
                self.now += seconds


def limiter_on(ledger: Ledger, time: FakeTime, limits: RateLimits | None = None) -> RateLimiter:
    return RateLimiter(ledger.engine, limits or RateLimits(), clock=time, sleep=time.sleep)


def buckets(ledger: Ledger) -> dict[str, float]:
    with ledger.engine.connect() as conn:
        return {row.bucket: row.full_at for row in conn.execute(select(rate_buckets_table))}


def fingerprint(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()[:12]


@pytest.fixture(autouse=True)
def limits_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite switches client-side limits off (tests/conftest.py); here they are on."""
    monkeypatch.delenv("MOLTBOT_RATE_LIMITS")


@pytest.fixture
def slack_url(sandbox) -> str:
    return sandbox.slack_webhook_url("limits")


# -- Notion: the test ----------------------------------------------------------------


def test_500_notion_requests_against_the_3_per_second_model_see_no_429(
    sandbox, notion_credentials, ledger: Ledger
) -> None:
    time = FakeTime()
    notion = sandbox.state.notion
    notion.limiter = TokenBucketLimiter(DEFAULT_RATE, DEFAULT_BURST, clock=time)
    client = notion_credentials.get_client(rate_limiter=limiter_on(ledger, time))

    for _ in range(250):
        page = client.pages.create(
            parent={"data_source_id": SANDBOX_DIGEST_DATA_SOURCE_ID}, properties={}
        )
        client.pages.retrieve(page["id"])

    statuses = [logged.status for logged in notion.core.requests]
    assert len(statuses) == 500 and set(statuses) == {200}
    assert len(notion.pages(SANDBOX_DIGEST_DATA_SOURCE_ID)) == 250
    # Paced at 3 a second after a burst of 10: what the 3-a-second model lets through.
    assert time.now - START == pytest.approx((500 - 10) / 3)
    [(bucket, _)] = buckets(ledger).items()
    assert bucket == f"notion:{fingerprint(SANDBOX_NOTION_TOKEN)}"
    assert SANDBOX_NOTION_TOKEN not in bucket


def test_without_limits_the_same_loop_meets_429_after_the_models_burst(
    sandbox, notion_credentials, ledger: Ledger
) -> None:
    time = FakeTime()
    notion = sandbox.state.notion
    notion.limiter = TokenBucketLimiter(DEFAULT_RATE, DEFAULT_BURST, clock=time)
    off = limiter_on(ledger, time, RateLimits(enabled=False))
    client = notion_credentials.get_client(rate_limiter=off)

    with pytest.raises(APIResponseError) as refused:
        for _ in range(500):
            client.users.me()

    assert refused.value.code == "rate_limited"
    assert [logged.status for logged in notion.core.requests] == [200] * DEFAULT_BURST + [429]
    assert time.slept == [] and buckets(ledger) == {}


# -- shared across processes -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return request.getfixturevalue("postgres_database_url")


def test_limiters_on_separate_engines_share_one_bucket_without_losing_a_token(
    shared_ledger_url: str,
) -> None:
    # Eight engines stand for eight processes; the clock stands still, so every token taken
    # is a reservation further ahead, and a lost update would show as two equal waits.
    time = FakeTime(advances=False)
    limits = RateLimits(notion={"per_second": 4, "burst": 5})
    ledgers = [Ledger(shared_ledger_url) for _ in range(8)]
    gates = [limiter_on(opened, time, limits).gate("notion", "token") for opened in ledgers]
    waits: list[float] = []
    lock = threading.Lock()

    def take(gate) -> None:
        for _ in range(25):
            waited = gate.wait()
            with lock:
                waits.append(waited)

    workers = [threading.Thread(target=take, args=(gate,)) for gate in gates]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for opened in ledgers:
        opened.close()

    expected = [0.0] * 5 + [k / 4 for k in range(1, 200 - 5 + 1)]
    assert sorted(waits) == pytest.approx(expected)
    assert sorted(time.slept) == pytest.approx(expected[5:])


# -- every client waits at its own service's gate -------------------------------------------------


def test_sheets_reads_and_writes_have_separate_buckets_per_service_account(
    sandbox, sheets_credentials, ledger: Ledger
) -> None:
    time = FakeTime()
    sheets = sandbox.state.sheets
    sid = sheets.create_spreadsheet("quota", {"S": [["a"]]})
    http = sheets_credentials.get_client(rate_limiter=limiter_on(ledger, time)).http_client

    for _ in range(11):
        http.values_get(sid, "S")
    http.values_update(sid, "S!A1", params={"valueInputOption": "RAW"}, body={"values": [["b"]]})

    # Ten reads at once, the eleventh after 60/50 s; the write has a bucket of its own.
    assert time.slept == [pytest.approx(1.2)]
    api = [(r.method, r.status) for r in sheets.core.requests if r.path.startswith("/v4/")]
    assert api == [("GET", 200)] * 11 + [("PUT", 200)]
    user = fingerprint(sheets_credentials.service_account_info.get_secret_value()["client_email"])
    assert set(buckets(ledger)) == {f"sheets_read:{user}", f"sheets_write:{user}"}


def test_slack_posts_wait_a_second_per_webhook(sandbox, ledger: Ledger) -> None:
    time = FakeTime()
    limiter = limiter_on(ledger, time)
    first = SlackIncomingWebhook(url=sandbox.slack_webhook_url("first"))
    second = SlackIncomingWebhook(url=sandbox.slack_webhook_url("second"))
    message = Message(key="k", automation="test", title="t", text="안녕하세요")

    first.send(message, rate_limiter=limiter)
    first.send(message, rate_limiter=limiter)
    second.send(message, rate_limiter=limiter)

    assert time.slept == [1.0]
    slack = sandbox.state.slack
    assert len(slack.messages_for(first.url.get_secret_value())) == 2
    assert len(slack.messages_for(second.url.get_secret_value())) == 1
    url = first.url.get_secret_value()
    assert f"slack:{fingerprint(url)}" in buckets(ledger)
    assert all(url not in name for name in buckets(ledger))


def test_jira_counts_every_request_of_its_client(sandbox, jira_credentials, ledger: Ledger) -> None:
    time = FakeTime()
    limits = RateLimits(jira={"per_second": 2, "burst": 1})
    client = jira_credentials.get_client(rate_limiter=limiter_on(ledger, time, limits))

    client.myself()
    client.myself()
    client.myself()

    assert time.slept == [0.5, 0.5]  # building the client sent nothing: the burst is myself's
    paths = [r.path for r in sandbox.state.jira.core.requests]
    assert paths == ["/rest/api/2/myself"] * 3


# -- configuration ------------------------------------------------------------------------------


def test_defaults_follow_the_published_limits() -> None:
    limits = get_settings().rate_limits

    assert (limits.notion.rate, limits.notion.burst) == (3.0, 10)
    # Google counts 60 a minute: 10 at once plus 50 a minute never puts 61 in one minute.
    assert limits.sheets_read.burst + limits.sheets_read.rate * 60 == pytest.approx(60)
    assert limits.sheets_write.burst + limits.sheets_write.rate * 60 == pytest.approx(60)
    assert (limits.slack.rate, limits.slack.burst) == (1.0, 1)
    assert (limits.jira.rate, limits.jira.burst) == (5.0, 10)


def test_a_table_in_moltbot_toml_changes_only_the_keys_it_names(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(
        "[rate_limits.notion]\nburst = 4\n\n"
        "[rate_limits.sheets_read]\nper_second = 0.5\n\n"
        "[rate_limits.slack]\nenabled = false\n",
        encoding="utf-8",
    )

    limits = get_settings().rate_limits

    assert (limits.notion.per_second, limits.notion.burst) == (3.0, 4)
    assert (limits.sheets_read.per_second, limits.sheets_read.per_minute) == (0.5, None)
    assert limits.sheets_read.burst == 10
    assert limits.for_service("slack") is None
    assert limits.for_service("jira") == limits.jira


def test_buckets_live_beside_the_default_ledger_and_never_create_it(
    moltbot_home: Path, sandbox, notion_credentials
) -> None:
    notion_credentials.get_client().users.me()  # the first of a burst: no wait

    assert not (moltbot_home / "ledger.sqlite3").exists()
    engine = create_engine(f"sqlite:///{moltbot_home / 'rate-limits.sqlite3'}")
    with engine.connect() as conn:
        [bucket] = conn.execute(select(rate_buckets_table.c.bucket)).scalars().all()
    engine.dispose()
    assert bucket == f"notion:{fingerprint(SANDBOX_NOTION_TOKEN)}"


def test_a_configured_ledger_database_holds_the_buckets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moltbot_home: Path, sandbox, slack_url: str
) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", shared)

    SlackIncomingWebhook(url=slack_url).send(Message(key="k", automation="t", title="t", text="x"))

    assert not (moltbot_home / "rate-limits.sqlite3").exists()
    with Ledger(shared) as opened:
        assert list(buckets(opened)) == [f"slack:{fingerprint(slack_url)}"]


def test_limits_switched_off_open_no_database(
    monkeypatch: pytest.MonkeyPatch, moltbot_home: Path, sandbox, notion_credentials
) -> None:
    monkeypatch.setenv("MOLTBOT_RATE_LIMITS", '{"enabled": false}')

    assert rate_gate("notion", "token") is None
    notion_credentials.get_client().users.me()

    assert sandbox.state.notion.core.count("GET", "/v1/users/me") == 1
    assert not moltbot_home.exists() or list(moltbot_home.iterdir()) == []


def test_a_bad_limit_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(
        "[rate_limits.notion]\nper_second = 0\n", encoding="utf-8"
    )

    result = CliRunner().invoke(app, ["list"])

    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "rate_limits.notion.per_second" in line


def test_an_unreachable_ledger_lets_the_request_go_with_a_warning(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    time = FakeTime()
    gate = limiter_on(ledger, time).gate("notion", "token")
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TABLE rate_buckets"))

    with caplog.at_level(logging.WARNING, logger="moltbot.ratelimits"):
        waited = gate.wait()

    assert waited == 0.0 and time.slept == []
    assert f"rate limit notion:{fingerprint('token')} not applied" in caplog.text
