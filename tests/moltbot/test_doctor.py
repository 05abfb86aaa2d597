"""`moltbot doctor`: each check decided from facts, then the command on an empty state and
against the session's Prefect server with the sandbox blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from moltbot.cli import app
from moltbot.doctor import (
    BlockFact,
    Check,
    DeploymentFact,
    Facts,
    LedgerFacts,
    OpsFacts,
    PrefectFacts,
    RateLimitFacts,
    SourceFact,
    business_channels,
    check_blocks,
    check_database_workers,
    check_deployments,
    check_encryption_key,
    check_exposure,
    check_ledger,
    check_ledger_hosts,
    check_ops_block,
    check_ops_channels,
    check_prefect_api,
    check_rate_limits,
    check_rotation,
    check_sources,
    check_vacuum,
    decide,
    signature,
    vacuum_types,
    worst,
)
from moltbot.doctor_gather import database_kind, ledger_facts

runner = CliRunner()

UP = PrefectFacts(
    api_url="http://127.0.0.1:4200/api",
    reachable=True,
    version="3.9.1",
    database="postgresql",
    host="127.0.0.1",
    auth_string_set=False,
    vacuum=frozenset({"events", "flow_runs"}),
    workers_online=1,
)


def _facts(**changes: object) -> Facts:
    facts = Facts(
        prefect=UP,
        encryption_key_set=True,
        rate_limits=RateLimitFacts(enabled=True),
        ledger=LedgerFacts(url="postgresql://moltbot@db/moltbot", kind="postgresql"),
        ops=OpsFacts(channels=("ops-slack",), block="ops-hook", saved=frozenset({"ops-slack"})),
        rotation_days=90,
        blocks=(),
        deployments=(),
        sources=(),
    )
    return replace(facts, **changes)


# -- the decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "workers", "status"),
    [
        ("sqlite", 2, "warn"),
        ("sqlite", 1, "ok"),
        ("sqlite", 0, "ok"),
        ("postgresql", 5, "ok"),
        ("unknown", 2, "warn"),
        ("unknown", 1, "ok"),
    ],
)
def test_sqlite_or_an_unknown_database_under_several_workers_warns(
    database: str, workers: int, status: str
) -> None:
    prefect = replace(UP, database=database, workers_online=workers)

    assert check_database_workers(prefect, locale="en").status == status


@pytest.mark.parametrize(
    ("key_set", "api_url", "status"),
    [
        (False, "http://127.0.0.1:4200/api", "warn"),
        (True, "http://127.0.0.1:4200/api", "ok"),
        (False, "https://api.prefect.cloud/api/accounts/a/workspaces/w", "ok"),
    ],
)
def test_an_unset_encryption_key_warns_except_on_prefect_cloud(
    key_set: bool, api_url: str, status: str
) -> None:
    check = check_encryption_key(replace(UP, api_url=api_url), key_set, locale="en")

    assert check.status == status
    if status == "warn":
        assert "PREFECT_SERVER_ENCRYPTION_KEY" in check.detail
        assert "same database" in check.detail
        assert check.action


@pytest.mark.parametrize(
    ("host", "api_url", "auth", "status"),
    [
        ("0.0.0.0", "http://127.0.0.1:4200/api", False, "fail"),
        ("0.0.0.0", "http://127.0.0.1:4200/api", True, "ok"),
        ("127.0.0.1", "http://prefect-server:4200/api", False, "fail"),
        ("127.0.0.1", "http://10.0.0.5:4200/api", True, "ok"),
        ("127.0.0.1", "http://localhost:4200/api", False, "ok"),
        ("::1", "http://[::1]:4200/api", False, "ok"),
    ],
)
def test_a_server_beyond_loopback_without_an_auth_string_fails(
    host: str, api_url: str, auth: bool, status: str
) -> None:
    prefect = replace(UP, host=host, api_url=api_url, auth_string_set=auth)

    check = check_exposure(prefect, locale="en")

    assert check.status == status
    if status == "fail":
        assert "PREFECT_SERVER_API_AUTH_STRING" in (check.action or "")


@pytest.mark.parametrize(
    ("enabled", "expected", "status"),
    [
        (["events"], {"events"}, "warn"),
        (["events", "flow_runs"], {"events", "flow_runs"}, "ok"),
        ("events,flow_runs", {"events", "flow_runs"}, "ok"),
        (True, {"events", "flow_runs"}, "ok"),
        (False, {"events"}, "warn"),
        (None, set(), "warn"),
    ],
)
def test_the_flow_run_vacuum_off_warns(enabled: object, expected: set, status: str) -> None:
    assert vacuum_types(enabled) == expected

    check = check_vacuum(replace(UP, vacuum=vacuum_types(enabled)), locale="en")

    assert check.status == status


def test_an_unreachable_api_is_one_failed_check_and_the_api_checks_are_skipped() -> None:
    down = PrefectFacts(api_url="http://127.0.0.1:9/api", reachable=False, error="refused")

    checks = decide(_facts(prefect=down, blocks=None, deployments=None, sources=None), locale="en")

    api = [check for check in checks if check.name.startswith("prefect.")]
    assert [(check.name, check.status) for check in api] == [("prefect.api", "fail")]
    assert "refused" in api[0].detail
    assert check_prefect_api(PrefectFacts(api_url=None, reachable=False), locale="en").status == (
        "fail"
    )


def test_a_part_that_could_not_be_checked_at_all_fails_in_one_line() -> None:
    problems = (("blocks", "ReadTimeout: timed out"),)
    checks = decide(_facts(blocks=None, problems=problems), locale="ko")

    [check] = [check for check in checks if check.name == "blocks"]
    assert (check.status, check.detail) == ("fail", "점검할 수 없음: ReadTimeout: timed out")


def test_blocks_fail_when_their_no_op_fails_and_stale_secrets_warn() -> None:
    blocks = (
        BlockFact("jira", "moltbot-jira-credentials", True, "Jira accepted", 10),
        BlockFact("notion", "moltbot-notion-credentials", False, "401 unauthorized", 120),
        BlockFact("team-slack", "moltbot-slack-incoming-webhook", None, "posts a message", None),
    )

    checks = {check.name: check for check in check_blocks(blocks, locale="en")}
    rotation = check_rotation(blocks, 90, locale="en")

    assert checks["block:moltbot-jira-credentials/jira"].status == "ok"
    failed = checks["block:moltbot-notion-credentials/notion"]
    assert (failed.status, failed.detail) == ("fail", "401 unauthorized")
    assert "blocks test notion" in (failed.action or "")
    assert checks["block:moltbot-slack-incoming-webhook/team-slack"].status == "ok"
    korean = check_blocks(blocks, locale="ko")
    assert [check.detail.split(":")[0] for check in korean] == [
        "인증된 무작업 호출 성공",
        "서비스가 거절했거나 응답 없음",
        "호출하지 않음",
    ]
    assert (rotation.status, "notion" in rotation.detail, "jira" in rotation.detail) == (
        "warn",
        True,
        False,
    )
    assert check_rotation(blocks[:1], 90, locale="en").status == "ok"
    assert [check.status for check in check_blocks((), locale="en")] == ["warn"]


@pytest.mark.parametrize(
    ("limits", "status"),
    [
        (RateLimitFacts(enabled=True), "ok"),
        (RateLimitFacts(enabled=False), "warn"),
        (RateLimitFacts(enabled=True, disabled=("slack",)), "warn"),
    ],
)
def test_rate_limits_switched_off_warn(limits: RateLimitFacts, status: str) -> None:
    assert check_rate_limits(limits, locale="en").status == status


@pytest.mark.parametrize(
    ("deployment", "status"),
    [
        (DeploymentFact("daily-report", present=True), "ok"),
        (DeploymentFact("daily-report", present=False), "warn"),
        (DeploymentFact("daily-report", present=True, paused=True), "fail"),
        (DeploymentFact("daily-report", present=True, schedules_inactive=1), "fail"),
        (DeploymentFact("daily-report", present=True, schedules=0), "fail"),
        (DeploymentFact("daily-report", present=True, schedules=0, scheduled=False), "ok"),
        (
            DeploymentFact("daily-report", present=True, paused=True, intended_paused=True),
            "ok",
        ),
        (
            DeploymentFact(
                "daily-report", present=True, paused=True, intended_paused=True,
                missing=("source",),
            ),
            "warn",
        ),
    ],
)  # fmt: skip
def test_a_deployment_paused_by_accident_fails(deployment: DeploymentFact, status: str) -> None:
    others = DeploymentFact("inventory-alert", present=True)

    checks = check_deployments([deployment, others], None, locale="en")

    assert checks[0].name == "deployment:daily-report"
    assert checks[0].status == status


def test_no_deployment_at_all_is_one_warning_and_a_bad_config_fails() -> None:
    none = [DeploymentFact("daily-report", present=False)]

    assert [(c.name, c.status) for c in check_deployments(none, None, locale="en")] == [
        ("deployments", "warn")
    ]
    [bad] = check_deployments(None, "[deployments.x]: unknown", locale="en")
    assert (bad.name, bad.status) == ("deployments", "fail")


@pytest.mark.parametrize(
    ("source", "status"),
    [
        (SourceFact("stripe", "webhook-stripe", "V", True, False), "ok"),
        (SourceFact("stripe", "webhook-stripe", "V", False, False), "warn"),
        (SourceFact("stripe", "webhook-stripe", "V", False, True, "stripe", "stripe"), "ok"),
        (SourceFact("stripe", "webhook-stripe", "V", False, True, "github", "stripe"), "fail"),
    ],
)
def test_gateway_sources_need_their_secret(source: SourceFact, status: str) -> None:
    [check] = check_sources([source], None, locale="en")

    assert (check.name, check.status) == ("gateway:stripe", status)


@pytest.mark.parametrize(
    ("ledger", "status"),
    [
        (LedgerFacts(url="sqlite:///x", kind="sqlite", exists=False), "ok"),
        (LedgerFacts(url="sqlite:///x", kind="sqlite"), "ok"),
        (LedgerFacts(url="sqlite:///x", kind="sqlite", reachable=False, error="no"), "fail"),
        (LedgerFacts(url="sqlite:///x", kind="sqlite", missing_columns=("effects.via",)), "warn"),
    ],
)
def test_the_ledger_must_answer_and_have_every_column(ledger: LedgerFacts, status: str) -> None:
    assert check_ledger(ledger, locale="en").status == status


@pytest.mark.parametrize(
    ("kind", "hosts", "status"),
    [
        ("sqlite", ("web-1", "worker-2"), "warn"),
        ("sqlite", ("web-1",), "ok"),
        ("postgresql", ("web-1", "worker-2"), "ok"),
    ],
)
def test_a_sqlite_ledger_written_from_several_hosts_warns(
    kind: str, hosts: tuple[str, ...], status: str
) -> None:
    ledger = LedgerFacts(url="x", kind=kind, hosts=hosts)

    assert check_ledger_hosts(ledger, locale="en").status == status


BUSINESS = business_channels(
    {
        "daily-report": {"info": ("team-slack", "outbox")},
        "inventory-alert": {"out": ("team-slack",), "low": ("outbox",)},
    }
)


@pytest.mark.parametrize(
    ("channels", "saved", "status", "word"),
    [
        (("outbox",), frozenset(), "warn", "outbox"),
        (("ops-slack", "outbox"), frozenset({"ops-slack"}), "ok", "ops-slack"),
        (("ops-slack",), frozenset(), "fail", "ops-slack"),
        (("team-slack",), frozenset({"team-slack"}), "warn", "daily-report, inventory-alert"),
        (("ops-slack",), None, "ok", "ops-slack"),
    ],
)
def test_the_ops_channel_missing_unsaved_or_shared_with_business(
    channels: tuple[str, ...], saved: frozenset[str] | None, status: str, word: str
) -> None:
    ops = OpsFacts(channels=channels, block="ops-hook", business=BUSINESS, saved=saved)

    check = check_ops_channels(ops, locale="en")

    assert check.status == status
    assert word in check.detail


def test_business_channels_leave_the_outbox_out() -> None:
    assert BUSINESS == {"team-slack": ("daily-report", "inventory-alert")}


def test_the_routes_of_moltbot_toml_are_business_except_the_health_automations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moltbot.config.settings import get_settings
    from moltbot.doctor_gather import ops_facts

    Path("moltbot.toml").write_text(
        '[routes.health]\nchanged = ["ops-slack"]\n[routes.daily-report]\ninfo = ["ops-slack"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("MOLTBOT_OPS_CHANNELS", '["ops-slack"]')

    ops = ops_facts(get_settings(), frozenset({"ops-slack"}))

    assert ops.business == {"ops-slack": ("daily-report",)}
    assert check_ops_channels(ops, locale="en").status == "warn"


@pytest.mark.parametrize(
    ("block", "status"), [(None, "warn"), ("team-slack", "warn"), ("ops-hook", "ok")]
)
def test_the_ops_block_missing_or_shared_warns(block: str | None, status: str) -> None:
    ops = OpsFacts(channels=("ops-slack",), block=block, business=BUSINESS)

    assert check_ops_block(ops, locale="en").status == status


def test_every_check_speaks_korean() -> None:
    facts = _facts(
        prefect=replace(UP, database="sqlite", workers_online=3, host="0.0.0.0", vacuum=None),
        encryption_key_set=False,
        ops=OpsFacts(channels=("outbox",), block=None),
    )

    checks = decide(facts, locale="ko")

    by_name = {check.name: check for check in checks}
    assert by_name["prefect.database"].detail.startswith("Prefect 데이터베이스가 SQLite")
    assert "PREFECT_SERVER_ENCRYPTION_KEY" in by_name["prefect.encryption_key"].detail
    assert "루프백" in by_name["prefect.exposure"].detail
    assert by_name["ops.channels"].action and "설정" in by_name["ops.channels"].action
    assert worst(checks) == "fail"


def test_the_signature_is_the_statuses_by_name_whatever_the_wording() -> None:
    en = decide(_facts(encryption_key_set=False), locale="en")
    ko = decide(_facts(encryption_key_set=False), locale="ko")

    assert signature(en) == signature(ko)
    assert signature(en)["prefect.encryption_key"] == "warn"
    assert signature(en) != signature(decide(_facts(), locale="en"))


@pytest.mark.parametrize(
    ("database", "kind"),
    [
        ({"driver": "postgresql+asyncpg", "connection_url": "**********"}, "postgresql"),
        ({"driver": None, "connection_url": "sqlite+aiosqlite:///x.db"}, "sqlite"),
        ({"driver": None, "connection_url": "**********"}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_the_database_kind_is_unknown_when_the_api_hides_it(database: dict, kind: str) -> None:
    assert database_kind(database) == kind


# -- the ledger, for real ----------------------------------------------------------------------


def test_ledger_facts_find_missing_columns_and_the_hosts_of_its_claims(tmp_path: Path) -> None:
    import sqlalchemy

    from moltbot.state.ledger import Ledger

    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert ledger_facts(url).exists is False
    with Ledger(url) as ledger:
        for key, holder in (("a", "web-1/10/5"), ("b", "web-1/11/6"), ("c", "worker-2/7/1")):
            ledger.claim(key, automation="x", kind="message", target="t", holder=holder)
    assert ledger_facts(url).hosts == ("web-1", "worker-2")
    assert ledger_facts(url).missing_columns == ()

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("ALTER TABLE effects DROP COLUMN due_at"))
    engine.dispose()

    assert ledger_facts(url).missing_columns == ("effects.due_at",)


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def no_prefect_api() -> Iterator[None]:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.mark.usefixtures("no_prefect_api")
def test_doctor_on_an_empty_state_fails_in_one_clear_line_without_a_traceback() -> None:
    result = runner.invoke(app, ["doctor", "--json"])

    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    checks = [Check.model_validate(check) for check in document["checks"]]
    failed = [check for check in checks if check.status == "fail"]
    assert [check.name for check in failed] == ["prefect.api"]
    assert "uv run moltbot server start" in (failed[0].action or "")
    assert document["failed"] is True
    assert {"ledger", "ops.channels", "rate_limits"} <= {check.name for check in checks}


@pytest.mark.usefixtures("no_prefect_api")
def test_doctor_human_output_is_a_table_and_korean_under_locale_ko() -> None:
    english = runner.invoke(app, ["doctor"], env={"COLUMNS": "250"})
    korean = runner.invoke(app, ["--locale", "ko", "doctor"], env={"COLUMNS": "250"})

    assert english.exit_code == korean.exit_code == 1
    assert "Traceback" not in english.output + korean.output
    assert "FAILED" in english.stdout and "no Prefect API" in english.stdout
    assert "실패" in korean.stdout and "Prefect API 없음" in korean.stdout
    assert "no Prefect API" not in korean.stdout
    assert "실패 1개" in korean.stdout


def test_doctor_against_a_prefect_server_checks_every_sandbox_block(
    sandbox_blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_OPS_CHANNELS", '["sandbox-slack"]')

    result = runner.invoke(app, ["doctor", "--json"])

    document = json.loads(result.stdout)
    checks = {check["name"]: check for check in document["checks"]}
    assert result.exit_code == (1 if document["failed"] else 0)
    assert checks["prefect.api"]["status"] == "ok"
    assert checks["prefect.api"]["detail"].startswith("Prefect 3.")
    # The test server listens on loopback with Prefect's defaults: vacuum of events only.
    assert checks["prefect.exposure"]["status"] == "ok"
    assert checks["prefect.vacuum"]["status"] == "warn"
    for kind, name in (
        ("moltbot-notion-credentials", "sandbox-notion"),
        ("moltbot-jira-credentials", "sandbox-jira"),
        ("moltbot-email-channel", "sandbox-email"),
    ):
        assert checks[f"block:{kind}/{name}"]["status"] == "ok", checks[f"block:{kind}/{name}"]
    slack = checks["block:moltbot-slack-incoming-webhook/sandbox-slack"]
    assert (slack["status"], slack["detail"].startswith("not contacted")) == ("ok", True)
    assert checks["ops.channels"]["status"] == "ok"
    assert checks["ledger"]["status"] == "ok"
    # Deployments were read from the server (whatever other tests left there).
    assert any(name == "deployments" or name.startswith("deployment:") for name in checks)
    assert {"gateway:stripe", "gateway:github"} <= set(checks), checks.get("gateway")
