"""Channel blocks: where messages go (Slack incoming webhook, SMTP e-mail, outbox folder)."""

from __future__ import annotations

import functools
import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Literal

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.dooray import DoorayIncomingHook
from blocks.jandi import JandiIncomingWebhook
from blocks.kakaowork import KakaoWorkBot
from blocks.naverworks import NaverWorksBot
from blocks.rotation import SecretSetAt, SecretStamped
from blocks.slack_bot import SlackBot
from blocks.sms import SolapiSms, TwilioSms
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_gate
from moltbot.retrying import retry_after_seconds

_SLACK_ERROR_BODY_LIMIT = 200


@functools.cache
def _default_tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once: loading the CA bundle anew costs every post
    about 50 ms of CPU."""
    return httpx.create_ssl_context()


class SlackIncomingWebhook(SecretStamped, Block):
    """Posts messages to a Slack incoming webhook as Block Kit JSON.

    Unlike Prefect's `SlackWebhook` (apprise), which silently sends nothing to a URL that is not
    `hooks.slack.com`, this block posts to any URL (the sandbox too) and raises on every non-2xx.

    Attributes:
        url: the webhook URL; it contains the credential, so it is a secret.
        timeout_seconds: connect/read timeout of one request.
    """

    _block_type_name = "Slack Incoming Webhook"
    _block_type_slug = "moltbot-slack-incoming-webhook"
    _description = "moltbot channel: a Slack incoming webhook (Block Kit JSON)."

    url: SecretStr = Field(description="Incoming webhook URL (https://hooks.slack.com/services/…).")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    def payload(self, message: Message) -> dict[str, object]:
        """The JSON body `send` posts for `message` (a dry run previews exactly this).

        Slack stores, indexes and notifies with the top-level `text`, so it is the message's
        chat form (`Message.chat_text`: the blocks' own text), never the e-mail text, which
        may hold what chat must not (free-text answers, personal data).
        """
        payload: dict[str, object] = {"text": message.chat_text()}
        if message.slack_blocks:
            payload["blocks"] = message.slack_blocks
        return payload

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Post `message`; return None (Slack webhooks answer a bare `ok`, no message id).

        The post first waits for the webhook's shared rate limit (``[rate_limits.slack]``, one
        message a second by default; see `moltbot.ratelimits`).

        Args:
            message: what to post.
            rate_limiter: the limiter to wait at (default: the configured one, real time).

        Raises:
            DeliveryError: transient for 429/5xx/connection errors, permanent for other 4xx.
        """
        url = self.url.get_secret_value()
        gate = rate_gate("slack", url, rate_limiter)
        if gate is not None:
            gate.wait()
        try:
            response = httpx.post(
                url,
                json=self.payload(message),
                timeout=self.timeout_seconds,
                verify=_default_tls_context(),
            )
        except httpx.TransportError as exc:
            # The exception text can include the URL, and the URL is the secret: name the type only.
            # Only a connection never made is known not to have posted; after a timeout or a
            # connection closed without an answer the post may have arrived all the same.
            never_sent = isinstance(
                exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            raise DeliveryError(
                f"Slack webhook unreachable ({type(exc).__name__})"
                if never_sent
                else f"Slack webhook gave no answer ({type(exc).__name__})",
                transient=True,
                maybe_applied=not never_sent,
            ) from None
        if response.is_success:
            return None
        body = response.text.strip()[:_SLACK_ERROR_BODY_LIMIT] or response.reason_phrase
        status = response.status_code
        raise DeliveryError.for_status(
            f"Slack answered {status} {body}",
            status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )


class EmailChannel(SecretStamped, Block):
    """Sends messages as multipart e-mail (text + HTML, images inline) over SMTP.

    Attributes:
        smtp_host: SMTP server host name.
        smtp_port: SMTP port (587 for STARTTLS, 465 for SSL, 25 for none).
        tls: `starttls`, `ssl`, or `none` (only for a local sink).
        username: SMTP login, when the server asks for one.
        password: SMTP password or app token.
        sender: the From address.
        recipients: the To addresses.
    """

    _block_type_name = "Email Channel"
    _block_type_slug = "moltbot-email-channel"
    _description = "moltbot channel: e-mail over SMTP with an HTML body and inline chart."

    smtp_host: str = Field(description="SMTP server host.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    tls: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="Transport security."
    )
    username: str | None = Field(default=None, description="SMTP login.")
    password: SecretStr | None = Field(default=None, description="SMTP password or app token.")
    sender: str = Field(description="From address.")
    recipients: list[str] = Field(min_length=1, description="To addresses.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="SMTP socket timeout.")
    secret_set_at: SecretSetAt = None

    def build_email(self, message: Message) -> EmailMessage:
        """Build the MIME message: text part, HTML part with inline images, other attachments."""
        email = EmailMessage()
        email["Subject"] = message.title
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        email["Message-ID"] = make_msgid(domain="moltbot.local")
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
            html_part = email.get_payload()[-1]
            for attachment in message.attachments:
                if attachment.inline_id:
                    maintype, subtype = attachment.content_type.split("/", 1)
                    html_part.add_related(
                        attachment.data,
                        maintype=maintype,
                        subtype=subtype,
                        cid=f"<{attachment.inline_id}>",
                        filename=attachment.filename,
                    )
        for attachment in message.attachments:
            if attachment.inline_id and message.html:
                continue
            maintype, subtype = attachment.content_type.split("/", 1)
            email.add_attachment(
                attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        return email

    def send(self, message: Message) -> str | None:
        """Send `message`; return its Message-ID.

        Raises:
            DeliveryError: transient for 4xx SMTP replies and connection errors, permanent for
                5xx replies and failed authentication; `maybe_applied` when the connection was
                lost after the message was handed over (the server may have taken it).
        """
        email = self.build_email(message)
        handed_over = False
        try:
            with self._connect() as smtp:
                if self.username and self.password is not None:
                    smtp.login(self.username, self.password.get_secret_value())
                handed_over = True
                smtp.send_message(email)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP authentication failed ({exc.smtp_code})",
                transient=False,
                status=exc.smtp_code,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise DeliveryError(
                f"SMTP server refused {len(exc.recipients)} recipient(s) (codes {codes})",
                transient=all(400 <= code < 500 for code in codes),
                status=codes[0] if codes else None,
            ) from None
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode("utf-8", "replace") if exc.smtp_error else ""
            raise DeliveryError(
                f"SMTP server answered {exc.smtp_code} {reply}".strip(),
                transient=400 <= exc.smtp_code < 500,
                status=exc.smtp_code,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            if handed_over:
                # No reply to the message: the server may have queued it before the line broke.
                raise DeliveryError(
                    f"SMTP server gave no reply to the message ({type(exc).__name__})",
                    transient=True,
                    maybe_applied=True,
                ) from None
            raise DeliveryError(
                f"SMTP server unreachable ({type(exc).__name__})", transient=True
            ) from None
        return str(email["Message-ID"])

    def _connect(self) -> smtplib.SMTP:
        if self.tls == "ssl":
            return smtplib.SMTP_SSL(
                self.smtp_host,
                self.smtp_port,
                timeout=self.timeout_seconds,
                context=ssl.create_default_context(),
            )
        smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds)
        if self.tls == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp


_UNSAFE_FILE_CHARS = re.compile(r"[\\/:*?\"<>|\x00-\x1f]+")


def safe_file_stem(text: str) -> str:
    """A file name stem from `text`: keeps Korean and other letters, drops path separators."""
    stem = _UNSAFE_FILE_CHARS.sub("-", text).strip(" .-")
    return stem[:150] or "message"


class OutboxChannel(Block):
    """Writes messages as files (`.md`, `.html`, attachments) into a folder: the zero-setup channel.

    Attributes:
        folder: where files go; empty means `<MOLTBOT_HOME>/outbox`.
    """

    _block_type_name = "Outbox Channel"
    _block_type_slug = "moltbot-outbox-channel"
    _description = "moltbot channel: writes messages as Markdown/HTML files into a folder."

    folder: str | None = Field(default=None, description="Folder; default <MOLTBOT_HOME>/outbox.")

    def target_folder(self) -> Path:
        """The folder files are written to (resolved at send time, never at import)."""
        if self.folder:
            return Path(self.folder)
        from moltbot.config.settings import get_settings

        return get_settings().outbox_dir

    def files(self, message: Message) -> dict[str, bytes]:
        """The files `send` writes for `message`, by name, the main (``.md``) file first (a dry
        run lists exactly these)."""
        stem = safe_file_stem(message.file_stem or message.key)
        files: dict[str, bytes] = {f"{stem}.md": (message.markdown or message.text).encode()}
        html = message.html
        for attachment in message.attachments:
            file_name = safe_file_stem(attachment.filename)
            files[file_name] = attachment.data
            if html and attachment.inline_id:
                # In a file, an inline image is the file beside it, not a MIME part.
                html = html.replace(f"cid:{attachment.inline_id}", file_name)
        if html:
            files[f"{stem}.html"] = html.encode()
        return files

    def send(self, message: Message) -> str | None:
        """Write the message's files atomically; return the path of the main file."""
        folder = self.target_folder()
        files = self.files(message)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                _write_atomically(folder / name, data)
        except OSError as exc:
            raise DeliveryError(
                f"outbox folder not writable ({type(exc).__name__}: {exc.strerror})",
                transient=False,
            ) from None
        return str(folder / next(iter(files)))


def _write_atomically(path: Path, data: bytes) -> None:
    # A crash mid-write must never leave a half report that looks complete.
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


CHANNEL_BLOCK_TYPES: tuple[type[Block], ...] = (
    SlackIncomingWebhook,
    SlackBot,
    EmailChannel,
    OutboxChannel,
    KakaoWorkBot,
    NaverWorksBot,
    TwilioSms,
    SolapiSms,
    JandiIncomingWebhook,
    DoorayIncomingHook,
)
