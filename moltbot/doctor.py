"""`moltbot doctor`: the checks' result model, the facts they read, and what each check decides.

Everything here is plain: the facts are gathered by `moltbot.doctor_gather` (Prefect API, blocks,
ledger, environment), and each `check_*` function turns facts into `Check`s in the locale, so
every decision is tested without a server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from moltbot.masking import mask_text

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")
DatabaseKind = Literal["sqlite", "postgresql", "unknown"]

CLOUD_HOST_SUFFIX = "prefect.cloud"
"""Prefect Cloud's API hosts end with this: Cloud manages its own database and encryption."""


class Check(BaseModel):
    """One finding of `moltbot doctor`.

    Attributes:
        name: a stable identifier (`prefect.api`, `block:moltbot-notion-credentials/notion`),
            the same in every locale: the health automation compares results by it.
        status: ok, warn (risky, works) or fail (broken: exit 1).
        detail: one line in the locale, never a secret.
        action: what to do about it, in the locale (None when nothing is to be done).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    detail: str = Field(description="One line, never a secret.")
    action: str | None = None


# -- the facts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefectFacts:
    """What the Prefect API said (everything None when it could not be asked).

    Attributes:
        api_url: the API the doctor used (None: none configured and no local server running).
        reachable: whether it answered.
        error: why not, in one line (masked).
        version: the server's Prefect version.
        database: the server database's kind (`unknown` when the API hides it).
        host: the interface the server's settings say it listens on.
        auth_string_set: whether the server has an auth string.
        vacuum: the server's enabled vacuum types.
        workers_online: workers online in all work pools.
        local_server: the API is the background server moltbot started.
    """

    api_url: str | None
    reachable: bool
    error: str | None = None
    version: str | None = None
    database: DatabaseKind = "unknown"
    host: str | None = None
    auth_string_set: bool | None = None
    vacuum: frozenset[str] | None = None
    workers_online: int | None = None
    local_server: bool = False

    @property
    def cloud(self) -> bool:
        """Whether the API is Prefect Cloud."""
        host = urlsplit(self.api_url or "").hostname or ""
        return host == CLOUD_HOST_SUFFIX or host.endswith("." + CLOUD_HOST_SUFFIX)


@dataclass(frozen=True)
class BlockFact:
    """One saved block: what its authenticated no-op found, and its secret's age."""

    name: str
    block_type: str
    ok: bool | None
    detail: str
    secret_age_days: int | None = None


@dataclass(frozen=True)
class DeploymentFact:
    """One automation's deployment as the registry and moltbot.toml want it, and as it is.

    Attributes:
        automation: the automation.
        present: a deployment `<automation>/default` exists.
        paused: it is paused.
        schedules_inactive: how many of its schedules are switched off.
        schedules: how many schedules it has.
        scheduled: the registry and moltbot.toml give it a schedule (a cron or an interval).
        intended_paused: moltbot.toml says paused, or it lacks parameters its runs need.
        missing: the parameters it lacks, in words.
    """

    automation: str
    present: bool
    paused: bool = False
    schedules_inactive: int = 0
    intended_paused: bool = False
    missing: tuple[str, ...] = ()
    schedules: int = 1
    scheduled: bool = True


@dataclass(frozen=True)
class SourceFact:
    """One webhook source of the gateway and where its signing secret would come from.

    Attributes:
        source: the source name (`/hooks/<source>`).
        block: its `WebhookSource` block's name.
        variable: the `MOLTBOT_WEBHOOK_SECRET_<SOURCE>` variable that may replace the block.
        variable_set: that variable is set in the doctor's environment.
        block_saved: the block is saved.
        block_scheme: the saved block's scheme.
        expected_scheme: the scheme `[webhooks.sources]` requires, if any.
    """

    source: str
    block: str
    variable: str
    variable_set: bool
    block_saved: bool
    block_scheme: str | None = None
    expected_scheme: str | None = None


@dataclass(frozen=True)
class LedgerFacts:
    """The ledger database: reachable, its schema, and which hosts have written to it.

    Attributes:
        url: its URL, password hidden.
        kind: the SQLAlchemy backend (`sqlite`, `postgresql`).
        exists: False for a SQLite file not created yet.
        reachable: a connection opened.
        error: why not (one line, masked).
        missing_columns: `table.column` the tables present lack.
        hosts: distinct host names in the effects' `holder` column.
    """

    url: str
    kind: str
    exists: bool = True
    reachable: bool = True
    error: str | None = None
    missing_columns: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpsFacts:
    """Where ops hear about problems, and the channels the automations' messages use.

    Attributes:
        channels: `MOLTBOT_OPS_CHANNELS`, the route of dead-letter announcements.
        block: `MOLTBOT_OPS_BLOCK`, the Prefect notification block for failed runs.
        business: channel -> the automations whose routes use it.
        saved: names of the saved channel blocks (None: unknown, the API is down).
        routes_error: why the routes could not be read (a bad `[routes]` table).
    """

    channels: tuple[str, ...]
    block: str | None
    business: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    saved: frozenset[str] | None = None
    routes_error: str | None = None


@dataclass(frozen=True)
class RateLimitFacts:
    """The `[rate_limits]` in force: on at all, and the APIs whose limit is off."""

    enabled: bool
    disabled: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    """Everything the checks decide from (see `moltbot.doctor_gather.gather_facts`).

    Lists are None when they could not be read (the Prefect API is down, a bad config).
    """

    prefect: PrefectFacts
    encryption_key_set: bool
    rate_limits: RateLimitFacts
    ledger: LedgerFacts
    ops: OpsFacts
    rotation_days: int
    blocks: tuple[BlockFact, ...] | None = None
    deployments: tuple[DeploymentFact, ...] | None = None
    deployments_error: str | None = None
    sources: tuple[SourceFact, ...] | None = None
    sources_error: str | None = None
    problems: tuple[tuple[str, str], ...] = ()
    """(check name, error) of the parts that could not be checked at all."""


# -- words -------------------------------------------------------------------------------------

# (English, Korean) of every detail and action; `{…}` are filled in with names and figures.
_WORDS: dict[str, tuple[str, str]] = {
    "api_none": (
        "no Prefect API: PREFECT_API_URL is not set and the local server is not running",
        "Prefect API 없음: PREFECT_API_URL이 설정되지 않았고 로컬 서버도 실행 중이 아님",
    ),
    "unchecked": ("could not check: {error}", "점검할 수 없음: {error}"),
    "unchecked_do": (
        "run uv run moltbot doctor again; if it stays, look at the Prefect server's log",
        "uv run moltbot doctor를 다시 실행하고, 계속되면 Prefect 서버 로그를 보세요",
    ),
    "api_none_do": (
        "start it: uv run moltbot server start (or set PREFECT_API_URL); the checks that need "
        "the API were skipped",
        "시작하기: uv run moltbot server start (또는 PREFECT_API_URL 설정); API가 필요한 점검은 "
        "건너뜀",
    ),
    "api_down": (
        "Prefect API at {url} does not answer: {error}",
        "{url}의 Prefect API 응답 없음: {error}",
    ),
    "api_down_do": (
        "start the server or fix PREFECT_API_URL (uv run moltbot server status); the checks "
        "that need the API were skipped",
        "서버를 시작하거나 PREFECT_API_URL을 고치세요 (uv run moltbot server status); API가 "
        "필요한 점검은 건너뜀",
    ),
    "api_ok": (
        "Prefect {version} at {url}, database: {database}",
        "Prefect {version} ({url}), 데이터베이스: {database}",
    ),
    "db_sqlite_workers": (
        "Prefect's database is SQLite and {workers} workers are online: SQLite takes one writer "
        "at a time",
        "Prefect 데이터베이스가 SQLite인데 워커 {workers}개가 실행 중: SQLite는 한 번에 하나만 씀",
    ),
    "db_unknown_workers": (
        "{workers} workers are online and the API hides which database the server uses",
        "워커 {workers}개가 실행 중인데 서버의 데이터베이스 종류는 API가 알려 주지 않음",
    ),
    "db_do": (
        "put the Prefect server on PostgreSQL (docs/production.md), or run one worker",
        "Prefect 서버를 PostgreSQL로 옮기거나 (docs/production.md) 워커를 하나만 실행하세요",
    ),
    "db_ok": (
        "database {database}, {workers} worker(s) online",
        "데이터베이스 {database}, 실행 중인 워커 {workers}개",
    ),
    "key_cloud": (
        "Prefect Cloud encrypts block secrets itself",
        "Prefect Cloud가 블록 비밀 값을 직접 암호화함",
    ),
    "key_set": (
        "PREFECT_SERVER_ENCRYPTION_KEY is set in this environment",
        "이 환경에 PREFECT_SERVER_ENCRYPTION_KEY가 설정됨",
    ),
    "key_unset": (
        "PREFECT_SERVER_ENCRYPTION_KEY is not set in this environment (checked here, not on "
        "the server): block secrets are then encrypted with a key kept in the same database",
        "이 환경에 PREFECT_SERVER_ENCRYPTION_KEY가 없음 (서버가 아닌 여기서 확인): 그러면 블록 "
        "비밀 값이 같은 데이터베이스에 든 키로 암호화됨",
    ),
    "key_do": (
        "set PREFECT_SERVER_ENCRYPTION_KEY (a Fernet key) on the server's service, kept apart "
        "from its database backups",
        "서버 서비스에 PREFECT_SERVER_ENCRYPTION_KEY(Fernet 키)를 설정하고 데이터베이스 백업과 "
        "따로 보관하세요",
    ),
    "exposed": (
        "the Prefect server is reachable beyond loopback ({where}) without an auth string: "
        "anyone who reaches it can read every block's secrets and start any deployment",
        "Prefect 서버가 루프백 밖({where})에서 접근 가능한데 인증 문자열이 없음: 접근하는 누구나 "
        "모든 블록의 비밀 값을 읽고 배포를 실행할 수 있음",
    ),
    "exposed_do": (
        "set PREFECT_SERVER_API_AUTH_STRING on the server (and PREFECT_API_AUTH_STRING on its "
        "clients), or listen on 127.0.0.1 only",
        "서버에 PREFECT_SERVER_API_AUTH_STRING을 (클라이언트에는 PREFECT_API_AUTH_STRING을) "
        "설정하거나 127.0.0.1에서만 받으세요",
    ),
    "exposed_auth": (
        "reachable beyond loopback ({where}), with an auth string",
        "루프백 밖({where})에서 접근 가능, 인증 문자열 있음",
    ),
    "loopback": ("listens on loopback only ({where})", "루프백에서만 받음 ({where})"),
    "vacuum_off": (
        "the flow-run vacuum is off: runs, their logs and artifacts are kept forever",
        "플로 실행 정리(vacuum)가 꺼져 있음: 실행, 로그, 아티팩트가 영원히 남음",
    ),
    "vacuum_do": (
        "set PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,flow_runs on the server",
        "서버에 PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED=events,flow_runs를 설정하세요",
    ),
    "vacuum_on": ("the flow-run vacuum is on", "플로 실행 정리(vacuum)가 켜져 있음"),
    "block_failed_do": (
        "fix the block, then: uv run moltbot blocks test {name}",
        "블록을 고친 뒤: uv run moltbot blocks test {name}",
    ),
    "blocks_none": (
        "no moltbot block is saved (only the outbox can be used)",
        "저장된 moltbot 블록 없음 (outbox만 쓸 수 있음)",
    ),
    "blocks_none_do": (
        "save the blocks of your accounts (docs/accounts.md), or try: uv run moltbot sandbox",
        "계정 블록을 저장하거나 (docs/accounts.md) 먼저 uv run moltbot sandbox로 시험해 보세요",
    ),
    "rotation_stale": (
        "secret older than {days} days: {names}",
        "{days}일보다 오래된 비밀 값: {names}",
    ),
    "rotation_do": (
        "issue a new secret, save the block again, then revoke the old one "
        "(MOLTBOT_SECRET_ROTATION_DAYS)",
        "새 비밀 값을 발급해 블록을 다시 저장한 뒤 이전 값을 폐기하세요 "
        "(MOLTBOT_SECRET_ROTATION_DAYS)",
    ),
    "rotation_ok": (
        "{count} secret(s), none older than {days} days",
        "비밀 값 {count}개, {days}일보다 오래된 것 없음",
    ),
    "limits_off": (
        "client-side rate limits are off: bursts may be refused with 429",
        "클라이언트 요청 제한이 꺼져 있음: 몰린 요청이 429로 거절될 수 있음",
    ),
    "limits_some_off": (
        "rate limit off for: {services}",
        "요청 제한이 꺼진 API: {services}",
    ),
    "limits_do": (
        "remove enabled = false from [rate_limits] in moltbot.toml (or MOLTBOT_RATE_LIMITS)",
        "moltbot.toml의 [rate_limits](또는 MOLTBOT_RATE_LIMITS)에서 enabled = false를 지우세요",
    ),
    "limits_ok": (
        "client-side rate limits on for every API",
        "모든 API에 클라이언트 요청 제한이 켜져 있음",
    ),
    "deploy_error": ("cannot read the deployments: {error}", "배포를 읽을 수 없음: {error}"),
    "deploy_error_do": (
        "fix [deployments] in moltbot.toml: uv run moltbot deploy --check",
        "moltbot.toml의 [deployments]를 고치세요: uv run moltbot deploy --check",
    ),
    "deploy_none": (
        "no deployment is registered: nothing runs on a schedule",
        "등록된 배포 없음: 일정대로 실행되는 것이 없음",
    ),
    "deploy_none_do": (
        "uv run moltbot deploy --pool NAME (or uv run moltbot serve)",
        "uv run moltbot deploy --pool 이름 (또는 uv run moltbot serve)",
    ),
    "deploy_missing": (
        "no deployment {name}/default while others are registered",
        "다른 배포는 있는데 {name}/default 배포가 없음",
    ),
    "deploy_missing_do": (
        "uv run moltbot deploy --pool NAME --only {name}",
        "uv run moltbot deploy --pool 이름 --only {name}",
    ),
    "deploy_no_schedule": (
        "registered without a schedule, though moltbot gives it one: it never runs by itself",
        "일정 없이 등록됨 (moltbot 설정에는 일정이 있음): 저절로 실행되지 않음",
    ),
    "deploy_again_do": (
        "deploy it again: uv run moltbot deploy --pool NAME --only {name}",
        "다시 배포하세요: uv run moltbot deploy --pool 이름 --only {name}",
    ),
    "deploy_paused_accident": (
        "paused, though moltbot.toml does not say so and its parameters are complete",
        "일시 중지됨 (moltbot.toml에 그런 설정이 없고 파라미터도 갖춰져 있음)",
    ),
    "deploy_inactive_accident": (
        "{count} schedule(s) switched off",
        "일정 {count}개가 꺼져 있음",
    ),
    "deploy_resume_do": (
        "resume it in the Prefect UI, or: uv run prefect deployment resume {name}/default",
        "Prefect UI에서 재개하거나: uv run prefect deployment resume {name}/default",
    ),
    "deploy_paused_missing": (
        "paused: its runs would lack {missing}",
        "일시 중지됨: 실행에 {missing}이(가) 없음",
    ),
    "deploy_paused_missing_do": (
        "add them to [deployments.{name}.parameters] in moltbot.toml, then deploy again",
        "moltbot.toml의 [deployments.{name}.parameters]에 추가한 뒤 다시 배포하세요",
    ),
    "deploy_paused_config": (
        "paused, as moltbot.toml says",
        "moltbot.toml 설정대로 일시 중지됨",
    ),
    "deploy_ok": ("registered, schedule active", "등록됨, 일정 활성"),
    "sources_error": ("cannot read [webhooks]: {error}", "[webhooks]를 읽을 수 없음: {error}"),
    "sources_error_do": (
        "fix [webhooks] in moltbot.toml (docs/webhooks.md)",
        "moltbot.toml의 [webhooks]를 고치세요 (docs/webhooks.md)",
    ),
    "source_variable": ("secret from {variable}", "비밀 값은 {variable}에서"),
    "source_missing": (
        "block {block} is not saved: the gateway would not start",
        "{block} 블록이 저장되지 않음: 게이트웨이가 시작되지 않음",
    ),
    "source_missing_do": (
        "save a WebhookSource block {block} (docs/webhooks.md), set {variable}, or remove "
        "the source from [webhooks.sources]",
        "WebhookSource 블록 {block}을 저장하거나 (docs/webhooks.md) {variable}을 설정하거나 "
        "[webhooks.sources]에서 지우세요",
    ),
    "source_scheme": (
        "block {block} has scheme {scheme}, [webhooks.sources] expects {expected}",
        "{block} 블록의 방식은 {scheme}인데 [webhooks.sources]는 {expected}을 기대함",
    ),
    "source_scheme_do": (
        "save the block with scheme {expected}, or change [webhooks.sources.{source}]",
        "블록을 {expected} 방식으로 다시 저장하거나 [webhooks.sources.{source}]를 바꾸세요",
    ),
    "source_ok": ("block {block} saved ({scheme})", "{block} 블록 저장됨 ({scheme})"),
    "ledger_new": (
        "{url}: not created yet (the first run creates it)",
        "{url}: 아직 없음 (첫 실행 때 만들어짐)",
    ),
    "ledger_down": ("{url}: cannot connect: {error}", "{url}: 연결할 수 없음: {error}"),
    "ledger_down_do": (
        "check MOLTBOT_LEDGER_URL and that the database is running",
        "MOLTBOT_LEDGER_URL과 데이터베이스 실행 여부를 확인하세요",
    ),
    "ledger_old": (
        "{url}: schema not current, missing {columns}",
        "{url}: 스키마가 최신이 아님, 없는 열: {columns}",
    ),
    "ledger_old_do": (
        "moltbot adds missing columns when it opens a table; if this stays, the ledger was "
        "made by another moltbot version: run the same version everywhere",
        "moltbot은 표를 열 때 빠진 열을 추가함; 계속 남으면 다른 버전의 moltbot이 만든 원장이니 "
        "모든 곳에서 같은 버전을 실행하세요",
    ),
    "ledger_ok": ("{url}: reachable, schema current", "{url}: 연결됨, 스키마 최신"),
    "hosts_sqlite": (
        "the SQLite ledger was written from {count} hosts ({hosts}): a file shared between "
        "hosts has unreliable locks, so an effect may run twice",
        "SQLite 원장에 호스트 {count}곳({hosts})이 썼음: 여러 호스트가 공유하는 파일은 잠금을 "
        "믿을 수 없어 같은 효과가 두 번 실행될 수 있음",
    ),
    "hosts_do": (
        "put the ledger on PostgreSQL: MOLTBOT_LEDGER_URL (docs/production.md)",
        "원장을 PostgreSQL로 옮기세요: MOLTBOT_LEDGER_URL (docs/production.md)",
    ),
    "hosts_ok": ("written from {count} host(s)", "쓴 호스트 {count}곳"),
    "ops_outbox": (
        "ops announcements (dead letters, effects in doubt) go only to the outbox folder",
        "운영 알림(배달 실패, 결과 불명)이 outbox 폴더로만 감",
    ),
    "ops_outbox_do": (
        'set MOLTBOT_OPS_CHANNELS to a chat block of the ops team, e.g. ["ops-slack", "outbox"]',
        'MOLTBOT_OPS_CHANNELS를 운영팀 채팅 블록으로 설정하세요, 예: ["ops-slack", "outbox"]',
    ),
    "ops_unsaved": (
        "ops channel(s) not saved: {names}: announcements to them would fail",
        "저장되지 않은 운영 채널: {names}: 그쪽 알림은 실패함",
    ),
    "ops_unsaved_do": (
        "save the block(s), or fix MOLTBOT_OPS_CHANNELS",
        "블록을 저장하거나 MOLTBOT_OPS_CHANNELS를 고치세요",
    ),
    "ops_shared": (
        "ops channel {name} is also a business channel (of {automations}): alerts drown "
        "among reports",
        "운영 채널 {name}이(가) 업무 채널이기도 함 ({automations}): 알림이 보고에 묻힘",
    ),
    "ops_shared_do": (
        "give ops a channel of its own (docs/accounts.md), apart from [routes]",
        "운영팀 전용 채널을 [routes]와 따로 두세요 (docs/accounts.md)",
    ),
    "ops_routes_error": ("cannot read [routes]: {error}", "[routes]를 읽을 수 없음: {error}"),
    "ops_ok": ("ops channels: {names}", "운영 채널: {names}"),
    "ops_block_none": (
        "MOLTBOT_OPS_BLOCK is not set: nobody is told when a scheduled run fails",
        "MOLTBOT_OPS_BLOCK이 없음: 예약 실행이 실패해도 아무도 알지 못함",
    ),
    "ops_block_none_do": (
        "save a notification block for ops and set MOLTBOT_OPS_BLOCK, then deploy again",
        "운영용 알림 블록을 저장하고 MOLTBOT_OPS_BLOCK을 설정한 뒤 다시 배포하세요",
    ),
    "ops_block_shared": (
        "MOLTBOT_OPS_BLOCK {name} is also a business channel (of {automations})",
        "MOLTBOT_OPS_BLOCK {name}이(가) 업무 채널이기도 함 ({automations})",
    ),
    "ops_block_ok": ("failed runs are reported to {name}", "실패한 실행은 {name}(으)로 알림"),
    # A block's own finding comes from `moltbot.blockcheck` (the service's words, in English);
    # Korean leads it with what happened.
    "block_ok": ("{detail}", "인증된 무작업 호출 성공: {detail}"),
    "block_none": ("{detail}", "호출하지 않음: {detail}"),
    "block_failed": ("{detail}", "서비스가 거절했거나 응답 없음: {detail}"),
}


def words(key: str, locale: str, **values: object) -> str:
    """The text `key` in `locale` (`en` or `ko`; English otherwise), `values` filled in."""
    english, korean = _WORDS[key]
    return (korean if locale == "ko" else english).format(**values)


def _check(
    check: str,
    status: Status,
    locale: str,
    detail: str,
    action: str | None = None,
    /,
    **values: object,
) -> Check:
    """The check `check` with its detail and action texts (keys of `_WORDS`) filled in."""
    return Check(
        name=check,
        status=status,
        detail=words(detail, locale, **values),
        action=words(action, locale, **values) if action else None,
    )


# -- the decisions -----------------------------------------------------------------------------


def check_prefect_api(prefect: PrefectFacts, *, locale: str) -> Check:
    """The API answers (fail when none is configured or it does not answer)."""
    if prefect.api_url is None:
        return _check("prefect.api", "fail", locale, "api_none", "api_none_do")
    if not prefect.reachable:
        return _check(
            "prefect.api",
            "fail",
            locale,
            "api_down",
            "api_down_do",
            url=mask_text(prefect.api_url),
            error=prefect.error or "?",
        )
    return _check(
        "prefect.api",
        "ok",
        locale,
        "api_ok",
        version=prefect.version or "?",
        url=mask_text(prefect.api_url),
        database=prefect.database,
    )


def check_database_workers(prefect: PrefectFacts, *, locale: str) -> Check:
    """SQLite (or an unknown database) under more than one worker is risky: warn."""
    workers = prefect.workers_online or 0
    if workers > 1 and prefect.database == "sqlite":
        return _check(
            "prefect.database", "warn", locale, "db_sqlite_workers", "db_do", workers=workers
        )
    if workers > 1 and prefect.database == "unknown" and not prefect.cloud:
        return _check(
            "prefect.database", "warn", locale, "db_unknown_workers", "db_do", workers=workers
        )
    return _check(
        "prefect.database", "ok", locale, "db_ok", database=prefect.database, workers=workers
    )


def check_encryption_key(prefect: PrefectFacts, key_set: bool, *, locale: str) -> Check:
    """`PREFECT_SERVER_ENCRYPTION_KEY` unset (in the doctor's environment) is a warning.

    The API does not show it, so the doctor can only look at its own environment: right when it
    runs beside the server (the systemd units and compose file share one environment file).
    """
    if prefect.cloud:
        return _check("prefect.encryption_key", "ok", locale, "key_cloud")
    if key_set:
        return _check("prefect.encryption_key", "ok", locale, "key_set")
    return _check("prefect.encryption_key", "warn", locale, "key_unset", "key_do")


def is_loopback(host: str | None) -> bool:
    """Whether `host` (an address or a name) stays on this machine; None counts as loopback."""
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(prefect: PrefectFacts, *, locale: str) -> Check:
    """A server reachable beyond loopback without an auth string fails the doctor.

    Fail, not warn: such a server hands every block's secrets to whoever reaches its port
    (the API returns them on request) and runs any deployment for them; that is a breach
    waiting to happen, not a risk to weigh. "Beyond loopback" is the server's own host
    setting, or the address the doctor reached it at (a `--host` flag is not in the settings).
    """
    reached = urlsplit(prefect.api_url or "").hostname
    outside = [host for host in (prefect.host, reached) if not is_loopback(host)]
    where = ", ".join(dict.fromkeys(outside)) or (prefect.host or reached or "127.0.0.1")
    if prefect.cloud:
        return _check("prefect.exposure", "ok", locale, "exposed_auth", where=where)
    if outside and not prefect.auth_string_set:
        return _check("prefect.exposure", "fail", locale, "exposed", "exposed_do", where=where)
    if outside:
        return _check("prefect.exposure", "ok", locale, "exposed_auth", where=where)
    return _check("prefect.exposure", "ok", locale, "loopback", where=where)


def check_vacuum(prefect: PrefectFacts, *, locale: str) -> Check:
    """The flow-run vacuum off (Prefect's default) keeps every run forever: warn."""
    if prefect.cloud or (prefect.vacuum is not None and "flow_runs" in prefect.vacuum):
        return _check("prefect.vacuum", "ok", locale, "vacuum_on")
    return _check("prefect.vacuum", "warn", locale, "vacuum_off", "vacuum_do")


def vacuum_types(enabled: object) -> frozenset[str]:
    """The vacuum types a `server.services.db_vacuum.enabled` value from the API turns on
    (a list, a comma-separated text, or Prefect's legacy booleans)."""
    if enabled is True or (isinstance(enabled, str) and enabled.strip().lower() == "true"):
        return frozenset({"events", "flow_runs"})
    if enabled is None:
        return frozenset()
    if enabled is False or (isinstance(enabled, str) and enabled.strip().lower() == "false"):
        return frozenset({"events"})
    if isinstance(enabled, str):
        enabled = enabled.split(",")
    if isinstance(enabled, Sequence | set | frozenset):
        return frozenset(str(item).strip() for item in enabled if str(item).strip())
    return frozenset()


def check_blocks(blocks: Sequence[BlockFact], *, locale: str) -> list[Check]:
    """One check per saved block: its authenticated no-op failed -> fail."""
    if not blocks:
        return [_check("blocks", "warn", locale, "blocks_none", "blocks_none_do")]
    checks = []
    for block in blocks:
        status: Status = "fail" if block.ok is False else "ok"
        lead = {True: "block_ok", None: "block_none", False: "block_failed"}[block.ok]
        checks.append(
            Check(
                name=f"block:{block.block_type}/{block.name}",
                status=status,
                detail=words(lead, locale, detail=block.detail),
                action=words("block_failed_do", locale, name=block.name)
                if status == "fail"
                else None,
            )
        )
    return checks


def check_rotation(blocks: Sequence[BlockFact], rotation_days: int, *, locale: str) -> Check:
    """A secret older than the rotation age is a warning (all such blocks in one check)."""
    aged = [block for block in blocks if block.secret_age_days is not None]
    stale = sorted(block.name for block in aged if block.secret_age_days > rotation_days)
    if stale:
        return _check(
            "secrets.rotation",
            "warn",
            locale,
            "rotation_stale",
            "rotation_do",
            days=rotation_days,
            names=", ".join(stale),
        )
    return _check(
        "secrets.rotation", "ok", locale, "rotation_ok", count=len(aged), days=rotation_days
    )


def check_rate_limits(limits: RateLimitFacts, *, locale: str) -> Check:
    """Client-side rate limits off (all, or for some API) is a warning."""
    if not limits.enabled:
        return _check("rate_limits", "warn", locale, "limits_off", "limits_do")
    if limits.disabled:
        return _check(
            "rate_limits",
            "warn",
            locale,
            "limits_some_off",
            "limits_do",
            services=", ".join(limits.disabled),
        )
    return _check("rate_limits", "ok", locale, "limits_ok")


def check_deployments(
    deployments: Sequence[DeploymentFact] | None, error: str | None, *, locale: str
) -> list[Check]:
    """Deployments present, and none paused (or its schedule off) by accident.

    None registered at all is a warning (runs by hand work, nothing runs on a schedule); one
    missing among others is a warning; one paused or with a schedule off that moltbot.toml and
    its parameters do not explain fails: its automation silently stopped.
    """
    if error is not None:
        return [
            _check("deployments", "fail", locale, "deploy_error", "deploy_error_do", error=error)
        ]
    if deployments is None:
        return []
    if not any(deployment.present for deployment in deployments):
        return [_check("deployments", "warn", locale, "deploy_none", "deploy_none_do")]
    checks = []
    for deployment in deployments:
        name = f"deployment:{deployment.automation}"
        values = {
            "name": deployment.automation,
            "count": deployment.schedules_inactive,
            "missing": ", ".join(deployment.missing),
        }
        if not deployment.present:
            checks.append(
                _check(name, "warn", locale, "deploy_missing", "deploy_missing_do", **values)
            )
        elif deployment.paused and deployment.missing:
            checks.append(
                _check(
                    name,
                    "warn",
                    locale,
                    "deploy_paused_missing",
                    "deploy_paused_missing_do",
                    **values,
                )
            )
        elif deployment.paused and deployment.intended_paused:
            checks.append(_check(name, "ok", locale, "deploy_paused_config", **values))
        elif deployment.paused:
            checks.append(
                _check(name, "fail", locale, "deploy_paused_accident", "deploy_resume_do", **values)
            )
        elif deployment.scheduled and not deployment.schedules:
            checks.append(
                _check(name, "fail", locale, "deploy_no_schedule", "deploy_again_do", **values)
            )
        elif deployment.schedules_inactive:
            checks.append(
                _check(
                    name, "fail", locale, "deploy_inactive_accident", "deploy_resume_do", **values
                )
            )
        else:
            checks.append(_check(name, "ok", locale, "deploy_ok", **values))
    return checks


def check_sources(
    sources: Sequence[SourceFact] | None, error: str | None, *, locale: str
) -> list[Check]:
    """Each gateway source has its signing secret: a variable, or its block saved with the
    expected scheme (a missing block warns: the gateway may not be in use; a scheme mismatch
    fails: the gateway refuses to start)."""
    if error is not None:
        return [_check("gateway", "fail", locale, "sources_error", "sources_error_do", error=error)]
    checks = []
    for source in sources or ():
        name = f"gateway:{source.source}"
        values = {
            "block": source.block,
            "variable": source.variable,
            "source": source.source,
            "scheme": source.block_scheme,
            "expected": source.expected_scheme,
        }
        if source.variable_set:
            checks.append(_check(name, "ok", locale, "source_variable", **values))
        elif not source.block_saved:
            checks.append(
                _check(name, "warn", locale, "source_missing", "source_missing_do", **values)
            )
        elif source.expected_scheme and source.block_scheme != source.expected_scheme:
            checks.append(
                _check(name, "fail", locale, "source_scheme", "source_scheme_do", **values)
            )
        else:
            checks.append(_check(name, "ok", locale, "source_ok", **values))
    return checks


def check_ledger(ledger: LedgerFacts, *, locale: str) -> Check:
    """The ledger answers (fail otherwise) and its tables have every column (warn otherwise)."""
    if not ledger.exists:
        return _check("ledger", "ok", locale, "ledger_new", url=ledger.url)
    if not ledger.reachable:
        return _check(
            "ledger",
            "fail",
            locale,
            "ledger_down",
            "ledger_down_do",
            url=ledger.url,
            error=ledger.error or "?",
        )
    if ledger.missing_columns:
        return _check(
            "ledger",
            "warn",
            locale,
            "ledger_old",
            "ledger_old_do",
            url=ledger.url,
            columns=", ".join(ledger.missing_columns),
        )
    return _check("ledger", "ok", locale, "ledger_ok", url=ledger.url)


def check_ledger_hosts(ledger: LedgerFacts, *, locale: str) -> Check:
    """A SQLite ledger written from more than one host is a warning (the hosts are those of
    the claims' `holder`: `<host>/<pid>/<start>`)."""
    count = len(ledger.hosts)
    if ledger.kind == "sqlite" and count > 1:
        return _check(
            "ledger.hosts",
            "warn",
            locale,
            "hosts_sqlite",
            "hosts_do",
            count=count,
            hosts=", ".join(ledger.hosts),
        )
    return _check("ledger.hosts", "ok", locale, "hosts_ok", count=count)


def business_channels(
    routes: Mapping[str, Mapping[str, Sequence[str]]],
) -> dict[str, tuple[str, ...]]:
    """Channel -> the automations whose routes name it, from automation -> severity -> links
    (the outbox left out: it is files, not a room people share)."""
    users: dict[str, list[str]] = {}
    for automation, severities in routes.items():
        for links in severities.values():
            for link in links:
                if link != "outbox" and automation not in users.setdefault(link, []):
                    users[link].append(automation)
    return {link: tuple(names) for link, names in users.items()}


def check_ops_channels(ops: OpsFacts, *, locale: str) -> Check:
    """The ops route: only the outbox (warn), a block not saved (fail), or shared with a
    business route (warn)."""
    if ops.routes_error:
        return _check(
            "ops.channels",
            "warn",
            locale,
            "ops_routes_error",
            "sources_error_do",
            error=ops.routes_error,
        )
    chat = [name for name in ops.channels if name != "outbox"]
    if ops.saved is not None:
        unsaved = [name for name in chat if name not in ops.saved]
        if unsaved:
            return _check(
                "ops.channels",
                "fail",
                locale,
                "ops_unsaved",
                "ops_unsaved_do",
                names=", ".join(unsaved),
            )
    if not chat:
        return _check("ops.channels", "warn", locale, "ops_outbox", "ops_outbox_do")
    for name in chat:
        if name in ops.business:
            return _check(
                "ops.channels",
                "warn",
                locale,
                "ops_shared",
                "ops_shared_do",
                name=name,
                automations=", ".join(ops.business[name]),
            )
    return _check("ops.channels", "ok", locale, "ops_ok", names=", ".join(ops.channels))


def check_ops_block(ops: OpsFacts, *, locale: str) -> Check:
    """The Prefect notification block for failed runs: missing or shared with business is a
    warning."""
    if not ops.block:
        return _check("ops.block", "warn", locale, "ops_block_none", "ops_block_none_do")
    bare = ops.block.rpartition("/")[2]
    if bare in ops.business:
        return _check(
            "ops.block",
            "warn",
            locale,
            "ops_block_shared",
            "ops_shared_do",
            name=ops.block,
            automations=", ".join(ops.business[bare]),
        )
    return _check("ops.block", "ok", locale, "ops_block_ok", name=ops.block)


def decide(facts: Facts, *, locale: str) -> list[Check]:
    """Every check, in the order the doctor shows them.

    The checks that need the Prefect API are left out when it does not answer: its own failed
    check says so, once.
    """
    prefect = facts.prefect
    checks = [check_prefect_api(prefect, locale=locale)]
    if prefect.reachable:
        checks += [
            check_database_workers(prefect, locale=locale),
            check_encryption_key(prefect, facts.encryption_key_set, locale=locale),
            check_exposure(prefect, locale=locale),
            check_vacuum(prefect, locale=locale),
        ]
    if facts.blocks is not None:
        checks += check_blocks(facts.blocks, locale=locale)
        checks.append(check_rotation(facts.blocks, facts.rotation_days, locale=locale))
    checks.append(check_rate_limits(facts.rate_limits, locale=locale))
    checks += check_deployments(facts.deployments, facts.deployments_error, locale=locale)
    checks += check_sources(facts.sources, facts.sources_error, locale=locale)
    checks += [
        _check(name, "fail", locale, "unchecked", "unchecked_do", error=error)
        for name, error in facts.problems
    ]
    checks += [
        check_ledger(facts.ledger, locale=locale),
        check_ledger_hosts(facts.ledger, locale=locale),
        check_ops_channels(facts.ops, locale=locale),
        check_ops_block(facts.ops, locale=locale),
    ]
    return checks


def worst(checks: Sequence[Check]) -> Status:
    """The worst status among `checks` (ok when there are none)."""
    return max((check.status for check in checks), key=STATUSES.index, default="ok")


def failed(checks: Sequence[Check]) -> bool:
    """Whether any check failed (the doctor exits 1)."""
    return any(check.status == "fail" for check in checks)


def signature(checks: Sequence[Check]) -> dict[str, Status]:
    """What makes two results the same: each check's status by name (not its wording or
    figures, which change with the locale and with every run)."""
    return {check.name: check.status for check in checks}


def as_document(checks: Sequence[Check]) -> dict[str, object]:
    """The `--json` document: overall status, whether anything failed, every check."""
    return {
        "status": worst(checks),
        "failed": failed(checks),
        "checks": [check.model_dump() for check in checks],
    }
