"""Assembling and serving the webhook gateway: blocks loaded once, inbox, dispatcher, uvicorn."""

from __future__ import annotations

import asyncio
import copy
import logging

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from moltbot.errors import InputError, ServiceError
from moltbot.masking import add_masking_filter, install_log_masking
from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger
from moltbot.webhooks.app import SourceVerifier, create_gateway_app
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.dispatcher import Dispatcher

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
# How long a client may take to send a request's headers: uvicorn waits forever, so a client
# trickling them keeps its connection open indefinitely.
HEADER_TIMEOUT_SECONDS = 10.0


def header_deadline_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers are not complete
    `seconds` after it opened (or after its previous response)."""

    class HeaderDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _waiting_after: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            # A new request cycle means its headers arrived in full.
            if self.cycle is not self._waiting_after:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_after = self.cycle
            self._deadline = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.cycle is self._waiting_after and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol


def load_verifiers(config: GatewayConfig) -> dict[str, SourceVerifier]:
    """Load every configured source's `WebhookSource` block, once, from the Prefect API.

    Raises:
        InputError: `PREFECT_API_URL` is unset, or blocks are missing (all of them named) or
            have another scheme than the config says.
        ServiceError: the Prefect API cannot be reached.
    """
    import httpx
    from prefect.settings import PREFECT_API_URL

    from blocks.webhooks import WebhookSource
    from moltbot.blockdocs import load_block

    api_url = PREFECT_API_URL.value()
    if not api_url:
        # Without it Prefect would start a private temporary server: blocks would be missing
        # and runs would go where nobody looks.
        raise InputError(
            "webhook gateway: set PREFECT_API_URL to the Prefect server it dispatches to"
        )
    verifiers: dict[str, SourceVerifier] = {}
    missing: list[str] = []
    problems: list[str] = []
    for name, source in config.sources.items():
        try:
            block = load_block(WebhookSource, source.block)
        except InputError:
            missing.append(source.block)
            continue
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"webhook gateway: cannot load blocks, the Prefect API at {api_url} is "
                f"unreachable ({type(exc).__name__})",
                transient=True,
            ) from None
        if source.scheme is not None and source.scheme != block.scheme:
            problems.append(
                f"source {name!r} expects scheme {source.scheme!r} but block "
                f"{source.block!r} has {block.scheme!r}"
            )
            continue
        verifiers[name] = SourceVerifier(
            scheme=block.scheme,
            secret=block.signing_secret,
            tolerance_seconds=source.tolerance_seconds,
        )
    if missing:
        names = ", ".join(sorted(set(missing)))
        problems.insert(
            0,
            f"missing WebhookSource block(s): {names} (save one per source with "
            "WebhookSource(signing_secret=..., scheme=...).save(name), "
            "or change [webhooks.sources])",
        )
    if problems:
        raise InputError(f"webhook gateway: {'; '.join(problems)}")
    return verifiers


def build_gateway(
    config: GatewayConfig,
    ledger_url: str,
    *,
    verifiers: dict[str, SourceVerifier] | None = None,
    dispatch: bool = True,
) -> FastAPI:
    """The gateway app: secrets loaded now, the inbox on the ledger database, a dispatcher.

    Args:
        config: sources and routes (`GatewayConfig.from_table` of moltbot.toml's `[webhooks]`).
        ledger_url: SQLAlchemy URL of the ledger database, which holds the inbox.
        verifiers: the sources' secrets; default: `load_verifiers(config)`.
        dispatch: run the dispatcher inside the app (started and stopped with it).

    Raises:
        InputError: missing blocks or PREFECT_API_URL unset (see `load_verifiers`).
        ServiceError: the Prefect API cannot be reached to load the blocks.
    """
    if verifiers is None:
        verifiers = load_verifiers(config)
    ledger = Ledger(ledger_url)
    inbox = Inbox(ledger)
    dispatcher = Dispatcher(inbox, config) if dispatch else None
    return create_gateway_app(
        config, inbox, verifiers, dispatcher=dispatcher, on_shutdown=ledger.close
    )


def serve_gateway(
    config: GatewayConfig,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    ledger_url: str | None = None,
    log_level: str = "info",
) -> None:
    """Run the gateway on uvicorn until SIGINT or SIGTERM, which stop it cleanly.

    The blocks are loaded and the inbox opened before listening; on a signal uvicorn finishes
    the requests in flight, then the dispatcher stops after its current entry. Ctrl-C returns
    normally; SIGTERM ends the process with the signal, as uvicorn does.

    Args:
        config: sources and routes.
        host: interface to listen on; put a TLS-terminating reverse proxy in front of it.
        port: TCP port.
        ledger_url: the ledger database; default: the `MOLTBOT_LEDGER_URL` setting.
        log_level: uvicorn's log level.

    Raises:
        InputError: missing blocks or PREFECT_API_URL unset, before listening.
        ServiceError: the Prefect API cannot be reached to load the blocks.
    """
    import uvicorn

    from moltbot.config.settings import get_settings

    app = build_gateway(config, ledger_url or get_settings().resolved_ledger_url)
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
        http=header_deadline_protocol(HEADER_TIMEOUT_SECONDS),
    )
    # uvicorn configured its logging just now: mask its error log and ours. Not the access log:
    # its formatter needs the record's arguments, which masking folds into the message, and its
    # lines hold only the client address, method, path and status.
    for name in ("uvicorn", "uvicorn.error", "moltbot"):
        for handler in logging.getLogger(name).handlers:
            add_masking_filter(handler)
    install_log_masking()
    try:
        uvicorn.Server(server_config).run()
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled, after the app (and dispatcher) shut down.
        return
