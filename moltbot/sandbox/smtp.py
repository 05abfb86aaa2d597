"""SMTP sink for the sandbox (aiosmtpd), plus the socket binding the sandbox server shares."""

from __future__ import annotations

import hmac
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from moltbot.errors import MoltbotError
from moltbot.sandbox.kit import StartedWhileEntered
from moltbot.sandbox.recording import RequestJournal

# Reply text for the fault codes tests reach for; any other 4xx/5xx gets a generic line.
DEFAULT_FAULT_REPLIES: dict[int, str] = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox busy, try again later",
    451: "4.3.0 Try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.7.1 Message rejected",
    552: "5.3.4 Message too big",
    554: "5.6.0 Transaction failed",
}


class SandboxError(MoltbotError, OSError):
    """The sandbox could not start (port taken, server did not come up in time).

    Also an `OSError`, so callers that already treat "cannot listen" as an OS error catch it.
    """


def bind_socket(host: str, port: int | None) -> socket.socket:
    """Bind a TCP socket on ``host:port`` (a free port when None) and return it, not listening.

    The servers are handed this bound socket instead of a port number: nothing else can grab a
    port between "found free" and "listening", and a taken port fails here with a clear error.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be named: asyncio sets TCP_NODELAY on accepted sockets only when it is
    # IPPROTO_TCP, and without it every kept-alive HTTP request waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # Same as asyncio and uvicorn do: lets a restarted sandbox reuse a port still in TIME_WAIT,
    # while Linux still refuses a port another socket is listening on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port or 0))
    except OSError as exc:
        sock.close()
        raise SandboxError(f"cannot listen on {host}:{port}: port already in use ({exc})") from exc
    return sock


@dataclass(frozen=True)
class ReceivedMail:
    """A message the sink accepted.

    Attributes:
        mail_from: envelope sender (``MAIL FROM``).
        rcpt_tos: envelope recipients (``RCPT TO``), in order.
        message: the parsed message (``email.policy.default``, so headers are decoded).
        raw: the bytes received after ``DATA``.
        received_at: when the sink accepted it (UTC).
    """

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def subject(self) -> str:
        """The decoded ``Subject`` header ('' when absent)."""
        return str(self.message.get("subject", ""))

    @property
    def text(self) -> str | None:
        """The plain-text body, when the message has one."""
        body = self.message.get_body(preferencelist=("plain",))
        return None if body is None else body.get_content()


@dataclass(frozen=True)
class RejectedMail:
    """A ``DATA`` command the sink refused because of an injected fault.

    Attributes:
        mail_from: envelope sender.
        rcpt_tos: envelope recipients.
        reply: the SMTP reply sent, e.g. ``451 4.3.0 Try again later``.
    """

    mail_from: str
    rcpt_tos: list[str]
    reply: str


class _SocketController(Controller):
    """aiosmtpd controller that serves on an already-bound socket.

    aiosmtpd 1.4.6 cannot take ``port=0`` (its readiness probe connects to port 0), so the sink
    binds first and overrides ``_create_server``, the hook aiosmtpd documents for subclasses.
    """

    def __init__(self, handler: Any, sock: socket.socket, **smtp_kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **smtp_kwargs)
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SmtpSink(StartedWhileEntered):
    """An SMTP server on localhost that keeps every message it accepts in memory.

    Args:
        host: address to listen on.
        port: port to listen on; a free one is chosen at `start` when None.
        username: when given with ``password``, AUTH (LOGIN or PLAIN) is required, over plain
            TCP, like prefect-email's ``smtp_type="INSECURE"``.
        password: the password to accept.

    Attributes:
        port: the port listened on (known after `start` when chosen automatically).
        messages: snapshot of accepted mail, oldest first.
        rejected: snapshot of ``DATA`` commands refused by injected faults.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host = host
        self._port = port
        self._credentials = (
            None if username is None else (username.encode(), str(password).encode())
        )
        self._controller: _SocketController | None = None
        self._journal: RequestJournal[ReceivedMail, RejectedMail, str] = RequestJournal()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SmtpSink.port is chosen at start(); start the sink first")
        return self._port

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._controller is not None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self._journal.accepted

    @property
    def rejected(self) -> list[RejectedMail]:
        return self._journal.rejected

    def start(self) -> SmtpSink:
        """Start listening; raises `SandboxError` when the port is taken."""
        if self._controller is not None:
            raise RuntimeError("SmtpSink is already running")
        sock = bind_socket(self.host, self._port)
        smtp_kwargs: dict[str, Any] = {
            # A fixed banner name: the default calls socket.getfqdn(), slow on some resolvers.
            "server_hostname": "moltbot-sandbox",
            "ready_timeout": 5.0,
        }
        if self._credentials is not None:
            smtp_kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=False,
            )
        controller = _SocketController(_Handler(self), sock, **smtp_kwargs)
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening and release the port; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def clear(self) -> None:
        """Forget received and rejected mail and pending faults."""
        self._journal.clear()

    def inject_fault(self, code: int = 451, count: int = 1, message: str | None = None) -> None:
        """Make the next ``count`` ``DATA`` commands answer ``code`` instead of accepting mail.

        4xx codes are transient (clients should retry), 5xx permanent. Faults queue up.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"SMTP fault code must be 4xx or 5xx, got {code}")
        text = message or DEFAULT_FAULT_REPLIES.get(code, "Requested action not taken")
        self._journal.add_fault(f"{code} {text}", count)

    def _take_fault(self) -> str | None:
        return self._journal.take_fault()

    def _record(self, mail: ReceivedMail | RejectedMail) -> None:
        if isinstance(mail, ReceivedMail):
            self._journal.record_accepted(mail)
        else:
            self._journal.record_rejected(mail)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self._credentials is not None
            and isinstance(auth_data, LoginPassword)
            and all(
                hmac.compare_digest(given, wanted)
                for given, wanted in zip(auth_data, self._credentials, strict=True)
            )
        )
        # handled=False makes aiosmtpd send "535 Authentication credentials invalid"; with the
        # default handled=True no reply is sent and smtplib hangs until its timeout.
        return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mail_from = envelope.mail_from or ""
        rcpt_tos = list(envelope.rcpt_tos)
        reply = self._sink._take_fault()
        if reply is not None:
            self._sink._record(RejectedMail(mail_from, rcpt_tos, reply))
            return reply
        raw = envelope.original_content or b""
        # SMTP puts CRLF on every line; parse with Python's "\n" so bodies compare equal to what
        # the sender passed to set_content(). policy.default decodes RFC 2047 (Korean) headers.
        parser = BytesParser(policy=default_policy)
        message = cast(EmailMessage, parser.parsebytes(raw.replace(b"\r\n", b"\n")))
        self._sink._record(ReceivedMail(mail_from, rcpt_tos, message, raw))
        return "250 2.0.0 OK: queued"
