"""Gathering the doctor's facts: the Prefect API, saved blocks, deployments, gateway, ledger.

Each part is read on its own and turns any failure into a fact (one masked line), so one
service down never hides the others' findings and nothing raises out of `gather_facts`.
The doctor never starts a server: without `PREFECT_API_URL` it uses the local background
server only when it is already running.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from moltbot.config.settings import Settings, get_settings
from moltbot.doctor import (
    BlockFact,
    DatabaseKind,
    DeploymentFact,
    Facts,
    LedgerFacts,
    OpsFacts,
    PrefectFacts,
    RateLimitFacts,
    SourceFact,
    business_channels,
    vacuum_types,
)
from moltbot.masking import mask_text

ENCRYPTION_KEY_ENV = "PREFECT_SERVER_ENCRYPTION_KEY"
# The doctor should answer within seconds even when a host is silent.
_PROBE_TIMEOUT_SECONDS = 5.0
_BLOCK_CHECKS_AT_ONCE = 8
_ERROR_CHARS = 200
T = TypeVar("T")


def one_line(error: BaseException | str) -> str:
    """An error as one masked line (its type when it has no text)."""
    text = (
        str(error) if not isinstance(error, BaseException) else (str(error) or type(error).__name__)
    )
    return mask_text(" ".join(text.split()))[:_ERROR_CHARS]


def gather_facts(
    *,
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Facts:
    """Everything `moltbot.doctor.decide` needs, read now.

    Args:
        settings: moltbot settings (read now when not given).
        environ: the environment to look for `PREFECT_SERVER_ENCRYPTION_KEY` and webhook
            secret variables in (this process's by default).
        now: the moment secret ages are counted to (default: now).
    """
    settings = settings or get_settings()
    environ = os.environ if environ is None else environ
    now = now or datetime.now(UTC)
    api_url, local = _api_url(settings.home)
    prefect = PrefectFacts(api_url=None, reachable=False)
    blocks = deployments = sources = None
    deployments_error = sources_error = None
    saved_names: frozenset[str] | None = None
    problems: list[tuple[str, str]] = []

    def guarded(name: str, read: Callable[[], T]) -> T | None:
        # Whatever else goes wrong in one part is that part's finding, not a traceback.
        try:
            return read()
        except Exception as exc:  # (the API or a driver failing in a way not foreseen)
            problems.append((name, f"{type(exc).__name__}: {one_line(exc)}"))
            return None

    if api_url is not None:
        with _using_api(api_url):
            prefect = _prefect_facts(api_url, local)
            if prefect.reachable:
                saved_names = _saved_block_names()
                blocks = guarded("blocks", lambda: _block_facts(now))
                deployments, deployments_error = guarded("deployments", _deployment_facts) or (
                    None,
                    None,
                )
                # Without the API a source's block cannot be looked up: the gateway checks
                # are skipped then, like the other checks that need it.
                sources, sources_error = guarded("gateway", lambda: _source_facts(environ)) or (
                    (),
                    None,
                )
    return Facts(
        prefect=prefect,
        encryption_key_set=bool(environ.get(ENCRYPTION_KEY_ENV, "").strip()),
        rate_limits=RateLimitFacts(
            enabled=settings.rate_limits.enabled,
            disabled=tuple(
                name
                for name in type(settings.rate_limits).model_fields
                if name != "enabled" and not getattr(settings.rate_limits, name).enabled
            ),
        ),
        ledger=ledger_facts(settings.resolved_ledger_url),
        ops=ops_facts(settings, saved_names),
        rotation_days=settings.secret_rotation_days,
        blocks=blocks,
        deployments=deployments,
        deployments_error=deployments_error,
        sources=sources if sources_error is None else None,
        sources_error=sources_error,
        problems=tuple(problems),
    )


# -- the Prefect API ---------------------------------------------------------------------------


def _api_url(home: Path) -> tuple[str | None, bool]:
    """The configured API, else the local server's when it runs; and whether it is the latter."""
    from prefect.settings import get_current_settings

    from moltbot.localserver import LocalServer

    configured = get_current_settings().api.url
    status = LocalServer(home / "prefect").status()
    local_url = status.record.api_url if status.running and status.record else None
    if configured:
        return configured, configured.rstrip("/") == (local_url or "").rstrip("/")
    return local_url, local_url is not None


@contextlib.contextmanager
def _using_api(api_url: str) -> Iterator[None]:
    """Point Prefect's clients at `api_url` for the block (the environment is left alone)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if get_current_settings().api.url == api_url:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def _prefect_facts(api_url: str, local: bool) -> PrefectFacts:
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    # A quick probe first: Prefect's client retries a connection for a while.
    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=_PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return PrefectFacts(
            api_url=api_url, reachable=False, error=_connect_error(exc), local_server=local
        )
    try:
        with get_client(sync_client=True) as client:
            version = client.request("GET", "/admin/version").json()
            server = _server_settings(client)
            workers = _workers_online(client)
    except PrefectHTTPStatusError as exc:
        status = exc.response.status_code
        hint = " (set PREFECT_API_AUTH_STRING or PREFECT_API_KEY)" if status in (401, 403) else ""
        return PrefectFacts(
            api_url=api_url, reachable=False, error=f"HTTP {status}{hint}", local_server=local
        )
    except (httpx.HTTPError, ValueError) as exc:
        return PrefectFacts(
            api_url=api_url, reachable=False, error=_connect_error(exc), local_server=local
        )
    database = server.get("database") or {}
    api = server.get("api") or {}
    vacuum = (server.get("services") or {}).get("db_vacuum") or {}
    auth = api.get("auth_string")
    return PrefectFacts(
        api_url=api_url,
        reachable=True,
        version=str(version),
        database="sqlite" if local else database_kind(database),
        host=api.get("host"),
        auth_string_set=bool(auth) if "auth_string" in api else None,
        vacuum=vacuum_types(vacuum.get("enabled")) if "enabled" in vacuum else None,
        workers_online=workers,
        local_server=local,
    )


def _connect_error(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host not found"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {_PROBE_TIMEOUT_SECONDS:g}s"
    return one_line(exc)


def _server_settings(client: Any) -> dict[str, Any]:
    """The server's own settings (secrets obfuscated by Prefect); {} where the API has none
    (Prefect Cloud)."""
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        document = client.request("GET", "/admin/settings").json()
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code in (401, 403):
            raise
        return {}
    server = document.get("server") if isinstance(document, dict) else None
    return server if isinstance(server, dict) else {}


def database_kind(database: Mapping[str, Any]) -> DatabaseKind:
    """The server database's kind from its `server.database` settings: the driver, or the
    connection URL when Prefect did not obfuscate it; `unknown` otherwise."""
    for value in (database.get("driver"), database.get("connection_url")):
        text = str(value or "").lower()
        if text.startswith("postgresql"):
            return "postgresql"
        if text.startswith("sqlite"):
            return "sqlite"
    return "unknown"


def _workers_online(client: Any) -> int:
    from prefect.client.schemas.objects import WorkerStatus

    online = 0
    for pool in client.read_work_pools():
        workers = client.read_workers_for_work_pool(pool.name)
        online += sum(1 for worker in workers if worker.status == WorkerStatus.ONLINE)
    return online


def _saved_block_names() -> frozenset[str] | None:
    """Names of every saved (named) block document, of any type."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            documents = client.read_block_documents(include_secrets=False)
    except Exception:  # (the ops check then cannot tell; it says nothing wrong)
        return None
    return frozenset(document.name for document in documents if document.name)


def _block_facts(now: datetime) -> tuple[BlockFact, ...]:
    """Every saved moltbot block with its authenticated no-op (`blocks test`), several at once."""
    from blocks.rotation import secret_age_days
    from moltbot.blockcheck import check_block
    from moltbot.blockdocs import saved_blocks

    listed = saved_blocks()

    def check(entry: dict[str, Any]) -> BlockFact:
        name, slug = str(entry["name"]), str(entry["type"])
        set_at = entry.get("secret_set_at")
        age = secret_age_days(datetime.fromisoformat(set_at) if set_at else None, now=now)
        try:
            found = check_block(f"{slug}/{name}")
        except Exception as exc:  # (one block's surprise is that block's finding)
            return BlockFact(name, slug, False, f"{type(exc).__name__}: {one_line(exc)}", age)
        return BlockFact(name, slug, found.ok, found.detail, age)

    # Each thread runs in a copy of this context: Prefect's settings (the API URL) live in it.
    with ThreadPoolExecutor(max_workers=max(1, min(_BLOCK_CHECKS_AT_ONCE, len(listed)))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, check, entry) for entry in listed]
        return tuple(future.result() for future in futures)


def _deployment_facts() -> tuple[tuple[DeploymentFact, ...] | None, str | None]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from deployments.specs import build_specs
    from moltbot.errors import InputError

    try:
        specs = build_specs(version="doctor")
    except InputError as exc:
        return None, one_line(exc)
    found = []
    with get_client(sync_client=True) as client:
        for spec in specs:
            try:
                deployment = client.read_deployment_by_name(spec.full_name)
            except ObjectNotFound:
                found.append(DeploymentFact(spec.automation.name, present=False))
                continue
            found.append(
                DeploymentFact(
                    spec.automation.name,
                    present=True,
                    paused=deployment.paused,
                    schedules_inactive=sum(1 for s in deployment.schedules if not s.active),
                    schedules=len(deployment.schedules),
                    scheduled=spec.cron is not None or spec.interval_seconds is not None,
                    intended_paused=spec.paused,
                    missing=spec.missing_parameters,
                )
            )
    return tuple(found), None


# -- the gateway, the ledger, ops --------------------------------------------------------------


def _source_facts(environ: Mapping[str, str]) -> tuple[tuple[SourceFact, ...], str | None]:
    """Each gateway source, its variable and its `WebhookSource` block as the API has it."""
    from moltbot.errors import InputError
    from moltbot.webhooks.config import GatewayConfig
    from moltbot.webhooks.secrets import secret_env_name

    try:
        config = GatewayConfig.from_project()
    except InputError as exc:
        return (), one_line(exc)
    schemes = _webhook_block_schemes()
    facts = []
    for name, source in config.sources.items():
        variable = secret_env_name(name)
        facts.append(
            SourceFact(
                source=name,
                block=source.block,
                variable=variable,
                variable_set=bool(environ.get(variable, "").strip()),
                block_saved=source.block in schemes,
                block_scheme=schemes.get(source.block),
                expected_scheme=source.scheme,
            )
        )
    return tuple(facts), None


def _webhook_block_schemes() -> dict[str, str | None]:
    from blocks.webhooks import WebhookSource
    from moltbot.blockdocs import saved_block_documents

    return {
        document.name: document.data.get("scheme")
        for document in saved_block_documents([WebhookSource])
        if document.name
    }


def _ledger_tables() -> Any:
    """The ledger's MetaData with every table moltbot defines on it (their modules imported)."""
    import moltbot.state
    from moltbot.state.ledger import metadata

    for module in pkgutil.iter_modules(moltbot.state.__path__):
        importlib.import_module(f"moltbot.state.{module.name}")
    importlib.import_module("moltbot.effects.breaker")
    return metadata


def ledger_facts(url: str) -> LedgerFacts:
    """Whether the ledger at `url` answers, which columns its tables lack, and the hosts in
    its claims' `holder` column. Nothing is created or changed (a SQLite file that does not
    exist is reported as not created yet)."""
    from sqlalchemy import column, create_engine, func, inspect, select, table
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        return LedgerFacts(url="?", kind="?", reachable=False, error=one_line(exc))
    shown = mask_text(parsed.render_as_string(hide_password=True))
    kind = parsed.get_backend_name()
    database = parsed.database or ""
    on_disk = kind == "sqlite" and database not in ("", ":memory:") and "file:" not in database
    if on_disk and not Path(database).expanduser().exists():
        return LedgerFacts(url=shown, kind=kind, exists=False)
    metadata = _ledger_tables()
    missing: list[str] = []
    hosts: tuple[str, ...] = ()
    try:
        engine = create_engine(parsed)
    except (SQLAlchemyError, ImportError) as exc:
        return LedgerFacts(url=shown, kind=kind, reachable=False, error=one_line(exc))
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            present = set(inspector.get_table_names())
            for defined in metadata.sorted_tables:
                if defined.name not in present:
                    continue  # created on first use
                columns = {item["name"] for item in inspector.get_columns(defined.name)}
                missing += [
                    f"{defined.name}.{c.name}" for c in defined.columns if c.name not in columns
                ]
            if "effects" in present and "effects.holder" not in missing:
                holder = column("holder")
                if engine.dialect.name == "postgresql":
                    host = func.split_part(holder, "/", 1)
                else:
                    host = func.substr(holder, 1, func.instr(holder, "/") - 1)
                statement = (
                    select(host).distinct().select_from(table("effects")).where(holder.is_not(None))
                )
                hosts = tuple(sorted(str(row[0]) for row in conn.execute(statement) if row[0]))
    except SQLAlchemyError as exc:
        return LedgerFacts(url=shown, kind=kind, reachable=False, error=one_line(exc.orig or exc))
    finally:
        engine.dispose()
    return LedgerFacts(url=shown, kind=kind, missing_columns=tuple(missing), hosts=hosts)


def ops_facts(settings: Settings, saved: frozenset[str] | None) -> OpsFacts:
    """The ops route and block, and the business channels of every automation's routes (the
    registry's defaults and `[routes]`). An automation whose rules fall back to the ops
    channels (`Rule.ops_fallback`, as health's) sends to ops: its routes are ops routes."""
    from moltbot.effects.routes import RoutesConfig
    from moltbot.errors import InputError
    from moltbot.registry import automation_names, automations

    routes: dict[str, dict[str, tuple[str, ...]]] = {
        automation.name: dict(automation.default_routes) for automation in automations()
    }
    error = None
    try:
        configured = RoutesConfig.load(automations=automation_names())
    except InputError as exc:
        error = one_line(exc)
    else:
        for automation, severities in configured.routes.items():
            for severity, route in severities.items():
                routes.setdefault(automation, {})[severity] = tuple(route.links)
    for automation in automations():
        if any(rule.ops_fallback for rule in automation.rules):
            routes.pop(automation.name, None)
    return OpsFacts(
        channels=tuple(settings.ops_channels),
        block=settings.ops_block,
        business=business_channels(routes),
        saved=saved,
        routes_error=error,
    )
