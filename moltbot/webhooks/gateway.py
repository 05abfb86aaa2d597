"""Assembling and serving the webhook gateway: secrets loaded once, inbox, dispatcher, uvicorn."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from moltbot.config.settings import get_settings
from moltbot.masking import add_masking_filter, install_log_masking
from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger
from moltbot.webhooks.acks import AckDesk, AckPathFilter
from moltbot.webhooks.app import SourceVerifier, create_gateway_app
from moltbot.webhooks.config import DEFAULT_MAX_CONNECTIONS_PER_CLIENT, GatewayConfig
from moltbot.webhooks.deadlines import CallLater, TimerHandle, loop_call_later
from moltbot.webhooks.dispatcher import Dispatcher
from moltbot.webhooks.secrets import load_gateway_secrets

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
# How long a client may take to send a request's headers: uvicorn waits forever, so a client
# trickling them keeps its connection open indefinitely.
HEADER_TIMEOUT_SECONDS = 10.0

logger = logging.getLogger("moltbot.webhooks")

_TOO_MANY_CONNECTIONS_BODY = json.dumps({"error": "too many connections from this client"})
_TOO_MANY_CONNECTIONS = (
    "HTTP/1.1 503 Service Unavailable\r\n"
    "content-type: application/json\r\n"
    "connection: close\r\n"
    f"content-length: {len(_TOO_MANY_CONNECTIONS_BODY)}\r\n\r\n"
    f"{_TOO_MANY_CONNECTIONS_BODY}"
).encode()


def gateway_protocol(
    *,
    header_timeout_seconds: float = HEADER_TIMEOUT_SECONDS,
    max_connections_per_client: int | None = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    call_later: CallLater = loop_call_later,
) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with the gateway's connection limits, for one server.

    A connection whose request headers are not complete `header_timeout_seconds` after it
    opened (or after its previous response) is closed. A client address that already holds
    `max_connections_per_client` open connections gets a 503 on the next one, which is closed
    at once, before anything is read: uvicorn's own `limit_concurrency` answers only once the
    headers arrived, so a client trickling them would still hold every connection it opens.
    (A client already sending its request may see the connection reset instead of the 503.)

    Args:
        header_timeout_seconds: the header deadline.
        max_connections_per_client: the cap per client address; None: no cap.
        call_later: the timer of the header deadline (tests pass one they fire themselves).
    """
    # One count per server: every connection's protocol runs on that server's event loop.
    open_connections: Counter[str] = Counter()

    class GatewayProtocol(H11Protocol):
        _deadline: TimerHandle | None = None
        _waiting_after: object = None
        _counted_for: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else None
            if address is not None and max_connections_per_client is not None:
                if open_connections[address] >= max_connections_per_client:
                    logger.warning(
                        "webhook gateway: refused a connection from %s, which holds %d already",
                        address,
                        open_connections[address],
                    )
                    self.transport.write(_TOO_MANY_CONNECTIONS)
                    self.transport.close()
                    return
                open_connections[address] += 1
                self._counted_for = address
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            # A new request cycle means its headers arrived in full.
            if self.cycle is not self._waiting_after:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted_for is not None:
                open_connections[self._counted_for] -= 1
                if open_connections[self._counted_for] <= 0:
                    del open_connections[self._counted_for]
                self._counted_for = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_after = self.cycle
            self._deadline = call_later(header_timeout_seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.cycle is self._waiting_after and not self.transport.is_closing():
                self.transport.close()

    return GatewayProtocol


def build_gateway(
    config: GatewayConfig,
    ledger_url: str,
    *,
    verifiers: dict[str, SourceVerifier] | None = None,
    home: Path | None = None,
    dispatch: bool = True,
) -> FastAPI:
    """The gateway app: secrets loaded now, the inbox on the ledger database, a dispatcher.

    Args:
        config: sources and routes (`GatewayConfig.from_table` of moltbot.toml's `[webhooks]`).
        ledger_url: SQLAlchemy URL of the ledger database, which holds the inbox.
        verifiers: the sources' secrets; default: `load_gateway_secrets(config, home=home)`.
        home: MOLTBOT_HOME, where the encrypted secret cache lives; default: the setting.
        dispatch: run the dispatcher inside the app (started and stopped with it).

    Raises:
        InputError: missing blocks or PREFECT_API_URL unset (see `load_gateway_secrets`).
        ServiceError: the Prefect API cannot be reached and no other source of the secrets has
            them all.
    """
    if verifiers is None:
        verifiers = load_gateway_secrets(config, home=home or _home()).verifiers
    ledger = Ledger(ledger_url)
    inbox = Inbox(ledger)
    dispatcher = Dispatcher(inbox, config) if dispatch else None
    acks = AckDesk(ledger, get_settings().locale, clock=lambda: datetime.now(UTC))
    return create_gateway_app(
        config, inbox, verifiers, dispatcher=dispatcher, on_shutdown=ledger.close, acks=acks
    )


def _home() -> Path:
    return get_settings().home


def serve_gateway(
    config: GatewayConfig,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    ledger_url: str | None = None,
    log_level: str = "info",
) -> None:
    """Run the gateway on uvicorn until SIGINT or SIGTERM, which stop it cleanly.

    The secrets are loaded (see `load_gateway_secrets`: while the Prefect API is down, from the
    environment or the encrypted cache) and the inbox opened before listening; webhooks are
    accepted at once and dispatched when the Prefect API answers. On a signal uvicorn finishes
    the requests in flight, then the dispatcher stops after its current entry. Ctrl-C returns
    normally; SIGTERM ends the process with the signal, as uvicorn does.

    Args:
        config: sources and routes.
        host: interface to listen on; put a TLS-terminating reverse proxy in front of it.
        port: TCP port.
        ledger_url: the ledger database; default: the `MOLTBOT_LEDGER_URL` setting.
        log_level: uvicorn's log level.

    Raises:
        InputError: missing blocks, PREFECT_API_URL unset or an unusable secret cache key,
            before listening.
        ServiceError: the Prefect API cannot be reached and no other source of the secrets has
            them all.
    """
    import uvicorn

    settings = get_settings()
    secrets = load_gateway_secrets(config, home=settings.home)
    app = build_gateway(
        config, ledger_url or settings.resolved_ledger_url, verifiers=secrets.verifiers
    )
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["moltbot"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config,
        server_header=False,
        http=gateway_protocol(max_connections_per_client=config.max_connections_per_client),
    )
    # uvicorn configured its logging just now: mask its error log and ours. Not the access log:
    # its formatter needs the record's arguments, which masking folds into the message, and its
    # lines hold only the client address, method, path and status.
    for name in ("uvicorn", "uvicorn.error", "moltbot"):
        for handler in logging.getLogger(name).handlers:
            add_masking_filter(handler)
    install_log_masking()
    logging.getLogger("uvicorn.access").addFilter(AckPathFilter())
    origins = ", ".join(f"{source} from {origin}" for source, origin in secrets.origins.items())
    logger.info("webhook gateway: signing secrets: %s", origins)
    for warning in secrets.warnings:
        logger.warning("%s", warning)
    try:
        uvicorn.Server(server_config).run()
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled, after the app (and dispatcher) shut down.
        return
