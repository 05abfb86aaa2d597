"""Checking saved blocks: one authenticated no-op per block, and whether their hosts answer."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from moltbot.errors import InputError, ServiceError
from moltbot.masking import mask_text

if TYPE_CHECKING:
    from prefect.blocks.core import Block
    from prefect.client.schemas.objects import BlockDocument

    from blocks import (
        EmailChannel,
        GoogleSheetsCredentials,
        JiraCredentials,
        NotionCredentials,
        SlackIncomingWebhook,
        SolapiSms,
        TwilioSms,
    )

# A check should fail fast on a host that does not answer; the block's own timeout still bounds
# a slow answer once connected.
_CONNECT_TIMEOUT_CAP = 5.0
_TEXT_LIMIT = 200
_DEFAULT_PORTS = {"http": 80, "https": 443, "smtp": 25, "smtps": 465}
_GOOGLE_SHEETS_URL = "https://sheets.googleapis.com"
_GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_CUSTOM_WEBHOOK_SLUG = "custom-webhook"
_TWILIO_API_URL = "https://api.twilio.com"

SEND_HINT = "uv run moltbot blocks test {name} --send"
"""The command that sends a test message through a chat webhook block."""

TEST_MESSAGE_TEXT = {
    "en": "moltbot test message — you can ignore this.",
    "ko": "moltbot 테스트 메시지입니다 — 무시하셔도 됩니다.",
}
"""The text of the one message `check_block(..., send=True)` posts, by `MOLTBOT_LOCALE`."""


class BlockCheck(BaseModel):
    """What checking one saved block found.

    Attributes:
        name: the block document's name.
        block_type: its block type slug (``moltbot-notion-credentials``).
        target: where it points (URL, ``smtp://host:port``, folder), never a secret.
        ok: True when the service accepted the no-op, False when it failed, None when nothing
            was contacted (a chat webhook without ``send``, a block with nothing to test).
        detail: one line: what was done, or what is wrong and what to do about it.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    block_type: str
    target: str | None = None
    ok: bool | None
    detail: str = Field(description="One line, never a secret.")


class _Failed(Exception):
    """A check's one-line finding that something is wrong (internal: becomes ok=False)."""


def check_block(name: str, *, send: bool = False, spreadsheet_id: str | None = None) -> BlockCheck:
    """Load the saved block `name` and make one authenticated no-op call with its client.

    Google Sheets: the service account's OAuth token exchange, then the metadata of
    `spreadsheet_id` when one is given. Notion: ``users.me``. Jira: ``myself``. E-mail: connect,
    TLS as configured, login when the block has credentials, ``NOOP``, quit. Chat webhooks post
    one marked test message only when `send` is True. moltbot retries nothing here (the
    clients' own retries are off too, except google-auth's for a token endpoint's 5xx): the
    first answer is the finding.

    Args:
        name: the block document's name, or ``TYPE-SLUG/NAME`` when several types use the name.
        send: post a test message through a chat webhook block.
        spreadsheet_id: a spreadsheet a Sheets block should be able to read.

    Raises:
        InputError: no saved block has that name (the message lists the saved names), or the
            name is used by several block types.
    """
    document = _find_document(name)
    slug = document.block_type.slug if document.block_type else "unknown"
    block_class = _moltbot_block_class(slug)
    if block_class is None and slug != _CUSTOM_WEBHOOK_SLUG:
        return BlockCheck(
            name=document.name or name,
            block_type=slug,
            ok=None,
            detail=f"nothing to test: {slug!r} is not one of moltbot's block types",
        )
    block = _load(block_class, slug, document.name or name)
    return _check_loaded(document.name or name, name, slug, block, send, spreadsheet_id)


def _check_loaded(
    name: str, asked: str, slug: str, block: Block, send: bool, spreadsheet_id: str | None
) -> BlockCheck:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from blocks import (
        DoorayIncomingHook,
        EmailChannel,
        GoogleSheetsCredentials,
        JandiIncomingWebhook,
        JiraCredentials,
        KakaoWorkBot,
        NaverWorksBot,
        NotionCredentials,
        OutboxChannel,
        SlackBot,
        SlackIncomingWebhook,
        SolapiSms,
        TwilioSms,
    )

    target = block_target(block)
    checks: list[tuple[type[Block], Callable[[], str]]] = [
        (GoogleSheetsCredentials, lambda: _check_sheets(block, spreadsheet_id)),
        (NotionCredentials, lambda: _check_notion(block)),
        (JiraCredentials, lambda: _check_jira(block, name)),
        (EmailChannel, lambda: _check_email(block)),
        (SlackIncomingWebhook, lambda: _post_to_slack(block)),
        (CustomWebhookNotificationBlock, lambda: _post_to_custom_webhook(block)),
        (JandiIncomingWebhook, lambda: _post_to_chat_webhook(block, "JANDI")),
        (DoorayIncomingHook, lambda: _post_to_chat_webhook(block, "Dooray!")),
        (TwilioSms, lambda: _check_twilio(block)),
        (SolapiSms, lambda: _check_solapi(block)),
        # A bot has an authenticated no-op: a user lookup (KakaoWork) or a token (NAVER WORKS).
        (KakaoWorkBot, lambda: block.check()),
        (NaverWorksBot, lambda: block.check()),
        # A Slack bot: auth.test (the token), then conversations.info (the channel).
        (SlackBot, lambda: block.check()),
    ]
    webhooks = (SlackIncomingWebhook, CustomWebhookNotificationBlock)
    if isinstance(block, (*webhooks, JandiIncomingWebhook, DoorayIncomingHook)) and not send:
        return BlockCheck(
            name=name,
            block_type=slug,
            target=target,
            ok=None,
            detail="not contacted: testing a chat webhook posts a message; to post one test "
            f"message: {SEND_HINT.format(name=asked)}",
        )
    if isinstance(block, OutboxChannel):
        detail = f"nothing to test: the outbox writes files into {block.target_folder()}"
        return BlockCheck(name=name, block_type=slug, target=target, ok=None, detail=detail)
    for block_class, check in checks:
        if isinstance(block, block_class):
            try:
                detail, ok = check(), True
            except _Failed as failure:
                detail, ok = str(failure), False
            except ServiceError as failure:
                detail, ok = _one_line(str(failure)), False
            return BlockCheck(name=name, block_type=slug, target=target, ok=ok, detail=detail)
    return BlockCheck(
        name=name,
        block_type=slug,
        target=target,
        ok=None,
        detail=f"nothing to test: a {type(block).__name__} block calls no service",
    )


# -- finding and loading the document -------------------------------------------------------


def _find_document(name: str) -> BlockDocument:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import BlockDocument

    from moltbot.blockdocs import moltbot_block_types, saved_block_documents

    wanted_slug, _, bare_name = name.strip().rpartition("/")
    if not bare_name:
        raise InputError("block name is empty")
    body = {
        "block_documents": {"name": {"any_": [bare_name]}, "is_anonymous": {"eq_": False}},
        "include_secrets": False,
    }
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/block_documents/filter", json=body)
    found = [
        document
        for document in BlockDocument.model_validate_list(response.json())
        if document.block_type and (not wanted_slug or document.block_type.slug == wanted_slug)
    ]
    moltbot_slugs = {block_type.get_block_type_slug() for block_type in moltbot_block_types()}
    # moltbot's own types first: a Prefect block of the same name is rarely what is meant.
    ours = [document for document in found if document.block_type.slug in moltbot_slugs]
    candidates = ours or found
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        slugs = ", ".join(sorted(document.block_type.slug for document in candidates))
        raise InputError(
            f"block name {bare_name!r} is saved for several types ({slugs}); "
            f"name one as TYPE/{bare_name}"
        )
    saved = sorted({doc.name for doc in saved_block_documents(moltbot_block_types()) if doc.name})
    choices = (
        f"saved: {', '.join(saved)}" if saved else "none is saved; see `uv run moltbot sandbox`"
    )
    raise InputError(f"no saved moltbot block named {name!r} ({choices})")


def _moltbot_block_class(slug: str) -> type[Block] | None:
    from moltbot.blockdocs import moltbot_block_types

    for block_type in moltbot_block_types():
        if block_type.get_block_type_slug() == slug:
            return block_type
    return None


def _load(block_class: type[Block] | None, slug: str, name: str) -> Block:
    from prefect.blocks.core import Block

    from moltbot.blockdocs import load_block
    from moltbot.masking import register_model_secrets

    if block_class is not None:
        return load_block(block_class, name)
    block = Block.load(f"{slug}/{name}")
    register_model_secrets(block)
    return block


# -- where a block points --------------------------------------------------------------------


def redacted_url(url: str) -> str:
    """`url` without what may be a credential: user info, query, and the path past its first
    segment (a webhook's token). ``https://hooks.slack.com/services/…``."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return "…"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else host
    first, _, rest = parts.path.strip("/").partition("/")
    path = f"/{first}" if first else ""
    return f"{parts.scheme}://{netloc}{path}{'/…' if rest or parts.query else ''}"


def block_target(block: Block) -> str | None:
    """Where `block` points, for printing: a URL (redacted when it holds a secret), an
    ``smtp://host:port`` address or a folder; None when it points nowhere."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from blocks import (
        EmailChannel,
        GoogleSheetsCredentials,
        JiraCredentials,
        KakaoWorkBot,
        NaverWorksBot,
        NotionCredentials,
        OutboxChannel,
        SlackBot,
        SlackIncomingWebhook,
        SolapiSms,
        TwilioSms,
    )

    if isinstance(block, GoogleSheetsCredentials):
        return _plain_url(block.api_base_url or _GOOGLE_SHEETS_URL)
    if isinstance(block, NotionCredentials):
        return _plain_url(block.base_url)
    if isinstance(block, JiraCredentials):
        return _plain_url(block.server_url)
    if isinstance(block, EmailChannel):
        return f"smtp://{block.smtp_host}:{block.smtp_port}"
    if isinstance(block, SlackIncomingWebhook):
        return redacted_url(block.url.get_secret_value())
    if isinstance(block, SlackBot):
        return f"{_plain_url(block.base_url)} #{block.channel}"
    if isinstance(block, CustomWebhookNotificationBlock):
        return redacted_url(block.url)
    if isinstance(block, OutboxChannel):
        return str(block.target_folder())
    if isinstance(block, TwilioSms):
        return _plain_url(block.base_url or _TWILIO_API_URL)
    if isinstance(block, SolapiSms):
        return _plain_url(block.base_url)
    if isinstance(block, KakaoWorkBot):
        return _plain_url(block.base_url)
    if isinstance(block, NaverWorksBot):
        return _plain_url(block.api_base)
    from blocks import DoorayIncomingHook, JandiIncomingWebhook

    if isinstance(block, JandiIncomingWebhook | DoorayIncomingHook):
        return redacted_url(block.url.get_secret_value())
    return None


def _plain_url(url: str) -> str:
    """A non-secret URL as configured, minus any user info or query someone pasted into it."""
    parts = urlsplit(url.strip())
    if not parts.hostname:
        return mask_text(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")


# -- whether a host answers ------------------------------------------------------------------


def parse_address(target_url_or_host: str) -> tuple[str, int]:
    """Host and port of a URL (``https://api.notion.com``), ``smtp://host:port``,
    ``host:port`` or a bare host name (port 443).

    Raises:
        InputError: no host name in it, or a port that is not a number.
    """
    text = target_url_or_host.strip()
    parts = urlsplit(text if "://" in text else f"//{text}")
    host = parts.hostname
    if not host:
        raise InputError("target has no host name (expected a URL or host:port)")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"target for host {host!r} has a port that is not a number") from None
    return host, port or _DEFAULT_PORTS.get(parts.scheme.lower(), 443)


def host_answers(target_url_or_host: str, timeout: float) -> bool:
    """Whether a TCP connection to the target's host and port opens within `timeout` seconds.

    Nothing is sent: the connection is closed as soon as it is open.

    Raises:
        InputError: the target has no host (see `parse_address`).
    """
    host, port = parse_address(target_url_or_host)
    return _connect_problem(host, port, timeout) is None


def _connect_problem(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection to host:port does not open (None when it does)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return "its name does not resolve"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _not_answering(address: tuple[str, int], timeout: float, setting: str) -> str | None:
    """The one-line finding when `address` does not accept connections, else None."""
    host, port = address
    problem = _connect_problem(host, port, min(timeout, _CONNECT_TIMEOUT_CAP))
    if problem is None:
        return None
    return (
        f"host {host}:{port} does not answer ({problem}); check the block's {setting} "
        "and that the service is running"
    )


def flag_unreachable(
    documents: Iterable[Mapping[str, Any]], *, timeout: float = 3.0
) -> list[dict[str, Any]]:
    """`documents` (as `moltbot.blockdocs.saved_blocks` lists them), each with ``host_answers``.

    ``host_answers`` is True or False after one TCP connect to the block's host (all probed at
    once), or None for blocks that point at no host (an outbox folder, a webhook source).
    A chat webhook's URL is its secret, so those blocks are loaded to find the host; no secret
    is added to the result.
    """
    entries = [dict(document) for document in documents]
    addresses = [_document_address(entry) for entry in entries]

    def probe(address: tuple[str, int] | None) -> bool | None:
        return None if address is None else _connect_problem(*address, timeout) is None

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(entries)))) as pool:
        answers = list(pool.map(probe, addresses))
    for entry, answer in zip(entries, answers, strict=True):
        entry["host_answers"] = answer
    return entries


def _document_address(entry: Mapping[str, Any]) -> tuple[str, int] | None:
    from blocks import (
        GoogleSheetsCredentials,
        OutboxChannel,
        SlackIncomingWebhook,
        WebhookSource,
    )

    slug, target = entry.get("type"), entry.get("target")
    if slug in (OutboxChannel.get_block_type_slug(), WebhookSource.get_block_type_slug()):
        return None
    if slug == GoogleSheetsCredentials.get_block_type_slug() and not target:
        target = _GOOGLE_SHEETS_URL
    if not target and slug == SlackIncomingWebhook.get_block_type_slug() and entry.get("name"):
        target = block_target(_load(SlackIncomingWebhook, slug, str(entry["name"])))
    if not target or "://" not in str(target):
        return None
    try:
        return parse_address(str(target))
    except InputError:
        return None


# -- the checks: each returns the success line or raises _Failed -----------------------------


def _check_sheets(block: GoogleSheetsCredentials, spreadsheet_id: str | None) -> str:
    import functools

    import gspread
    import requests
    from google.auth import exceptions as google_auth_exceptions
    from google.auth.transport.requests import Request

    info = block.service_account_info.get_secret_value()
    email = str(info.get("client_email") or "(no client_email in the key)")
    token_uri = str(info.get("token_uri") or _GOOGLE_TOKEN_URI)
    try:
        client = block.get_client()
    except ValueError as exc:
        raise _Failed(
            f"the service account key is not usable ({_one_line(str(exc))}); paste the whole "
            "JSON key of the service account into the block's service_account_info"
        ) from None
    http = client.http_client
    connect = min(block.timeout_seconds, _CONNECT_TIMEOUT_CAP)
    try:
        # A fresh token even when one is cached: the check is that the key works now.
        http.auth.refresh(functools.partial(Request(), timeout=(connect, block.timeout_seconds)))
    except google_auth_exceptions.RefreshError as exc:
        reason = _one_line(str(exc.args[0]) if exc.args else type(exc).__name__)
        raise _Failed(
            f"the token was refused: {_plain_url(token_uri)} refused the service account "
            f"{email} ({reason}); the key may be deleted or disabled: create a new key"
        ) from None
    except google_auth_exceptions.TransportError as exc:
        raise _Failed(
            _not_answering(parse_address(token_uri), connect, "service_account_info token_uri")
            or f"the token request to {_plain_url(token_uri)} failed ({_cause_name(exc)})"
        ) from None
    if not spreadsheet_id:
        return (
            f"the service account {email} got a token from {_plain_url(token_uri)}; no "
            "spreadsheet was read (pass --spreadsheet-id ID to check one is shared with it)"
        )
    try:
        metadata = http.fetch_sheet_metadata(spreadsheet_id)
    except gspread.exceptions.APIError as exc:
        status = exc.response.status_code
        text = _one_line(f"{exc.error.get('status', '')}: {exc.error.get('message', '')}")
        if status == 404:
            raise _Failed(
                f"spreadsheet {spreadsheet_id!r} not found, or not shared with the service "
                f"account e-mail {email}: check the id and share the sheet with that address"
            ) from None
        if status == 403:
            raise _Failed(
                f"the service account {email} may not read spreadsheet {spreadsheet_id!r} "
                f"(403 {text}); share the sheet with that address, and check the Sheets API "
                "is enabled for its project"
            ) from None
        raise _Failed(_status_line(status, text, "service_account_info")) from None
    except requests.RequestException as exc:
        api = block.api_base_url or _GOOGLE_SHEETS_URL
        raise _Failed(
            _not_answering(parse_address(api), connect, "api_base_url")
            or _transport_line(exc, block.timeout_seconds)
        ) from None
    title = metadata.get("properties", {}).get("title", "")
    sheets = len(metadata.get("sheets", []))
    return f"spreadsheet {title!r} ({sheets} worksheet(s)) is readable by {email}"


def _check_notion(block: NotionCredentials) -> str:
    import httpx
    from notion_client.errors import HTTPResponseError, RequestTimeoutError

    client = block.get_client()
    try:
        me = client.users.me()
    except HTTPResponseError as exc:
        code = getattr(exc.code, "value", exc.code)
        raise _Failed(_status_line(exc.status, f"{code}: {_one_line(str(exc))}", "token")) from None
    except RequestTimeoutError:
        raise _Failed(_timeout_line(block.base_url, block.timeout_seconds)) from None
    except httpx.TransportError as exc:
        raise _Failed(
            _not_answering(parse_address(block.base_url), block.timeout_seconds, "base_url")
            or _transport_line(exc, block.timeout_seconds)
        ) from None
    finally:
        client.close()
    bot = me.get("bot") or {}
    workspace = bot.get("workspace_name")
    where = f" in workspace {workspace!r}" if workspace else ""
    return f"Notion accepted the token: integration {me.get('name') or me.get('id')!r}{where}"


def _check_jira(block: JiraCredentials, name: str) -> str:
    # One attempt: a check reports the first answer instead of retrying it away.
    once = block.model_copy(update={"max_retries": 0})
    label = once.label(name)
    try:
        client = once.get_client(block_name=name)
        me = once.call(client.myself, action="myself", block_name=name)
    except ServiceError as failure:
        text = _one_line(str(failure)).removeprefix(f"{label}: ")
        # The block's own hint; the finding below names the fields itself.
        text = text.removesuffix(" (check the block's e-mail and API token)")
        if failure.status is not None:
            status_text = text.removeprefix(f"{failure.status} ")
            raise _Failed(
                _status_line(failure.status, status_text, "email and api_token")
            ) from None
        if failure.transient:
            raise _Failed(
                _not_answering(parse_address(block.server_url), block.timeout_seconds, "server_url")
                or text
            ) from None
        raise _Failed(text) from None
    # A check may spend one more request: the runs no longer read serverInfo, so this is where
    # a Server or Data Center site is named before a run's first search is refused.
    not_cloud = once.not_cloud_error(client, name)
    if not_cloud is not None:
        raise _Failed(_one_line(str(not_cloud)).removeprefix(f"{label}: "))
    account = me.get("displayName") or me.get("accountId") or "?"
    return f"Jira accepted {block.email} (account {account!r})"


def _check_twilio(block: TwilioSms) -> str:
    # Fetching the account is Twilio's cheapest authenticated call; it texts nobody.
    import requests
    from twilio.base.exceptions import TwilioException

    client = block.get_client()
    try:
        account = client.api.v2010.accounts(block.account_sid).fetch()
    except TwilioException as exc:
        status = int(getattr(exc, "status", 0) or 0)
        code = getattr(exc, "code", None)
        if status == 401 or code == 20003:
            raise _Failed(
                f"Twilio refused the credentials (401, error 20003); check the block's "
                f"account_sid and auth_token (or API key) for {block.account_sid}"
            ) from None
        raise _Failed(_status_line(status or 500, f"error {code}", "auth_token")) from None
    except requests.RequestException as exc:
        api = block.base_url or _TWILIO_API_URL
        raise _Failed(
            _not_answering(parse_address(api), block.timeout_seconds, "base_url")
            or _transport_line(exc, block.timeout_seconds)
        ) from None
    return (
        f"Twilio accepted the credentials of account {block.account_sid} "
        f"(status {account.status!r}); no message was sent"
    )


def _check_solapi(block: SolapiSms) -> str:
    # The balance is Solapi's cheapest signed call; it texts nobody.
    import httpx

    try:
        balance = block.get_client().get_balance()
    except httpx.TransportError as exc:
        raise _Failed(
            _not_answering(parse_address(block.base_url), _CONNECT_TIMEOUT_CAP, "base_url")
            or _transport_line(exc, None)
        ) from None
    except Exception as exc:
        if type(exc) is not Exception or not exc.args:
            raise
        code = _one_line(str(exc.args[0]))
        raise _Failed(
            f"Solapi refused the check ({code}); check the block's api_key and api_secret "
            "(and this host's clock)"
        ) from None
    return (
        f"Solapi accepted the API key (balance {balance.balance:,.0f}, point "
        f"{balance.point:,.0f}); no message was sent"
    )


def _check_email(block: EmailChannel) -> str:
    address = (block.smtp_host, block.smtp_port)
    step = "connect"
    try:
        smtp = block._connect()
        with smtp:
            if block.username and block.password is not None:
                step = "login"
                smtp.login(block.username, block.password.get_secret_value())
            step = "noop"
            code, _ = smtp.noop()
    except smtplib.SMTPAuthenticationError as exc:
        raise _Failed(
            f"the SMTP server refused the login of {block.username!r} "
            f"({exc.smtp_code} {_smtp_text(exc.smtp_error)}); check the block's username and "
            "password (an app password where the provider asks for one)"
        ) from None
    except smtplib.SMTPNotSupportedError:
        if step == "login":
            raise _Failed(
                f"{block.smtp_host}:{block.smtp_port} offers no login (AUTH) on this connection; "
                "most servers offer it only after STARTTLS: set tls to 'starttls' or 'ssl'"
            ) from None
        raise _Failed(
            f"TLS mismatch: {block.smtp_host}:{block.smtp_port} does not offer STARTTLS; use "
            "its STARTTLS port (587), or tls 'ssl' on its SSL port (465)"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise _Failed(
            f"the TLS certificate of {block.smtp_host} was not accepted "
            f"({exc.verify_message or exc.reason}); check smtp_host is the name on it"
        ) from None
    except ssl.SSLError as exc:
        raise _Failed(
            f"TLS mismatch: the TLS handshake with {block.smtp_host}:{block.smtp_port} failed "
            f"({exc.reason or type(exc).__name__}) with tls {block.tls!r}; 'ssl' needs an SSL "
            "port (465), 'starttls' a plain one (587)"
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise _Failed(
            f"the SMTP server answered {exc.smtp_code} {_smtp_text(exc.smtp_error)} at {step}"
        ) from None
    except TimeoutError:
        hint = "; is it an SSL port? set tls to 'ssl'" if block.tls != "ssl" else ""
        raise _Failed(
            _not_answering(address, block.timeout_seconds, "smtp_host and smtp_port")
            or f"{block.smtp_host}:{block.smtp_port} did not answer within "
            f"{block.timeout_seconds:g}s at {step}{hint}"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise _Failed(
            _not_answering(address, block.timeout_seconds, "smtp_host and smtp_port")
            or f"the SMTP conversation failed at {step} ({type(exc).__name__})"
        ) from None
    security = {"starttls": "STARTTLS", "ssl": "SSL", "none": "no TLS"}[block.tls]
    login = f", login of {block.username!r} accepted" if step == "noop" and block.username else ""
    return f"SMTP server answered NOOP with {code} ({security}{login}); nothing was sent"


def _test_message_text() -> str:
    from moltbot.config.settings import get_settings

    locale = get_settings().locale
    return TEST_MESSAGE_TEXT.get(locale, TEST_MESSAGE_TEXT["en"])


def _post_to_slack(block: SlackIncomingWebhook) -> str:
    from moltbot.errors import DeliveryError
    from moltbot.messages import Message

    text = _test_message_text()
    message = Message(key="moltbot-block-test", automation="moltbot", title=text, text=text)
    try:
        block.send(message)
    except DeliveryError as failure:
        if failure.status is None:
            url = block.url.get_secret_value()
            raise _Failed(
                _not_answering(parse_address(url), block.timeout_seconds, "url")
                or _one_line(str(failure))
            ) from None
        raise _Failed(_webhook_status_line(failure.status, _one_line(str(failure)))) from None
    return "posted one test message; Slack answered ok"


def _post_to_chat_webhook(block: Block, provider: str) -> str:
    # A JANDI or Dooray! webhook: its own `send`, so the test post is what alerts look like.
    from moltbot.errors import DeliveryError
    from moltbot.messages import Message

    text = _test_message_text()
    message = Message(key="moltbot-block-test", automation="moltbot", title=text, text=text)
    try:
        block.send(message)  # type: ignore[attr-defined]
    except DeliveryError as failure:
        if failure.status is None:
            url = block.url.get_secret_value()  # type: ignore[attr-defined]
            raise _Failed(
                _not_answering(parse_address(url), _CONNECT_TIMEOUT_CAP, "url")
                or _one_line(str(failure))
            ) from None
        raise _Failed(_webhook_status_line(failure.status, _one_line(str(failure)))) from None
    return f"posted one test message; {provider} answered with success"


def _post_to_custom_webhook(block: Block) -> str:
    import httpx

    text = _test_message_text()
    try:
        block.notify(text, subject=text, _sync=True)  # type: ignore[attr-defined]
    except httpx.HTTPStatusError as exc:
        body = mask_text(exc.response.text.strip()[:_TEXT_LIMIT]) or exc.response.reason_phrase
        raise _Failed(_webhook_status_line(exc.response.status_code, body)) from None
    except httpx.TransportError as exc:
        url = block.url  # type: ignore[attr-defined]
        raise _Failed(
            _not_answering(parse_address(url), _CONNECT_TIMEOUT_CAP, "url")
            or _transport_line(exc, None)
        ) from None
    return "posted one test message; the webhook answered with success"


# -- one-line findings ------------------------------------------------------------------------


def _status_line(status: int, text: str, credential: str) -> str:
    text = _one_line(text).rstrip(".")
    if status in (401, 403):
        return f"the token was refused: {status} {text}; check the block's {credential}"
    if status == 404:
        return f"not found: {status} {text}; check the block's URL"
    if status == 429:
        return f"rate limited: {status} {text}; try again in a minute"
    if status >= 500:
        return f"the service failed: {status} {text}; try again later"
    return f"the service refused the check: {status} {text}"


def _webhook_status_line(status: int, text: str) -> str:
    if status in (404, 410):
        return (
            f"the webhook does not exist any more ({text}); create a new incoming webhook and "
            "save its URL in the block"
        )
    if status in (401, 403):
        return f"the webhook was refused ({text}); check the block's url"
    return _status_line(status, text, "url")


def _timeout_line(url: str, timeout: float) -> str:
    host, port = parse_address(url)
    return f"host {host}:{port} did not answer within {timeout:g}s (timeout); try again later"


def _transport_line(exc: BaseException, timeout: float | None) -> str:
    name = type(exc).__name__
    if "Timeout" in name and timeout is not None:
        return f"no answer within {timeout:g}s ({name}); try again later"
    if "SSL" in name or "ssl" in str(exc).lower():
        return f"the TLS handshake failed ({name}); check the URL's scheme and certificate"
    return f"the request failed on the way ({name})"


def _cause_name(exc: BaseException) -> str:
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    return type(cause).__name__


def _smtp_text(reply: bytes | str | None) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return _one_line(reply or "")


def _one_line(text: str) -> str:
    """`text` masked, on one line, and short."""
    line = " ".join(mask_text(text).split())
    return line if len(line) <= _TEXT_LIMIT else line[:_TEXT_LIMIT] + "…"
