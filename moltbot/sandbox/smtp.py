"""SMTP sink for the sandbox (aiosmtpd), plus the socket binding the sandbox server shares."""

from __future__ import annotations

import hmac
import random
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any, Literal, cast

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


SmtpFaultKind = Literal["reply", "drop"]
"""``reply`` answers ``DATA`` with an error code; ``drop`` closes the connection instead."""
# What `RejectedMail.reply` says for a ``DATA`` whose connection was dropped without a reply.
DROPPED_REPLY = "(connection dropped without a reply)"


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
        reply_lost: accepted, then the connection was dropped before the ``250`` reply (an
            injected fault): the sender cannot know the mail arrived.
    """

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reply_lost: bool = False

    @property
    def subject(self) -> str:
        """The decoded ``Subject`` header ('' when absent)."""
        return str(self.message.get("subject", ""))

    @property
    def text(self) -> str | None:
        """The plain-text body, when the message has one."""
        body = self.message.get_body(preferencelist=("plain",))
        return None if body is None else body.get_content()


@dataclass
class _SmtpFault:
    kind: SmtpFaultKind
    reply: str
    after_accept: bool
    remaining: int | None
    probability: float


@dataclass(frozen=True)
class RejectedMail:
    """A ``DATA`` command the sink refused because of an injected fault.

    Attributes:
        mail_from: envelope sender.
        rcpt_tos: envelope recipients.
        reply: the SMTP reply sent, e.g. ``451 4.3.0 Try again later``, or `DROPPED_REPLY`.
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
        seed: seed of the random draws of probabilistic faults, for repeatable tests.

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
        *,
        seed: int | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host = host
        self._port = port
        self._credentials = (
            None if username is None else (username.encode(), str(password).encode())
        )
        self._controller: _SocketController | None = None
        self._journal: RequestJournal[ReceivedMail, RejectedMail, None] = RequestJournal()
        self._faults_lock = threading.Lock()
        self._faults: deque[_SmtpFault] = deque()
        self._random = random.Random(seed)

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
        with self._faults_lock:
            self._faults.clear()

    def inject_fault(
        self,
        code: int = 451,
        count: int | None = 1,
        message: str | None = None,
        *,
        kind: SmtpFaultKind = "reply",
        after_accept: bool = False,
        probability: float = 1.0,
    ) -> None:
        """Make the next ``count`` ``DATA`` commands fail instead of accepting mail.

        ``reply`` answers ``code`` (4xx transient, clients should retry; 5xx permanent);
        ``drop`` closes the connection without a reply, and with `after_accept` it first
        accepts the mail (it is in `messages`, marked `reply_lost`), the case where a sender
        cannot know. ``count=None`` keeps the fault until `clear`; with `probability` below 1
        only that share of ``DATA`` commands is hit (each hit uses one of `count`). Faults are
        tried in the order they were injected.

        Raises:
            ValueError: a code outside 4xx/5xx, a count below 1, a probability outside (0, 1],
                or `after_accept` with a ``reply``.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"SMTP fault code must be 4xx or 5xx, got {code}")
        if count is not None and count < 1:
            raise ValueError(f"fault count must be at least 1, got {count}")
        if not 0 < probability <= 1:
            raise ValueError(f"fault probability must be in (0, 1], got {probability}")
        if after_accept and kind != "drop":
            raise ValueError("after_accept goes with kind drop (a reply after accepting is a 250)")
        text = message or DEFAULT_FAULT_REPLIES.get(code, "Requested action not taken")
        fault = _SmtpFault(kind, f"{code} {text}", after_accept, count, probability)
        with self._faults_lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every pending fault; received and rejected mail stay."""
        with self._faults_lock:
            self._faults.clear()

    def reseed(self, seed: int | None) -> None:
        """Restart the random draws of probabilistic faults from `seed`."""
        with self._faults_lock:
            self._random = random.Random(seed)

    def _take_fault(self) -> _SmtpFault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.probability < 1 and self._random.random() >= fault.probability:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

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
        fault = self._sink._take_fault()
        if fault is not None and not fault.after_accept:
            reply = fault.reply if fault.kind == "reply" else DROPPED_REPLY
            self._sink._record(RejectedMail(mail_from, rcpt_tos, reply))
            if fault.kind == "drop":
                _drop_connection(server)
            return fault.reply
        raw = envelope.original_content or b""
        # SMTP puts CRLF on every line; parse with Python's "\n" so bodies compare equal to what
        # the sender passed to set_content(). policy.default decodes RFC 2047 (Korean) headers.
        parser = BytesParser(policy=default_policy)
        message = cast(EmailMessage, parser.parsebytes(raw.replace(b"\r\n", b"\n")))
        lost = fault is not None
        self._sink._record(ReceivedMail(mail_from, rcpt_tos, message, raw, reply_lost=lost))
        if lost:
            _drop_connection(server)
        return "250 2.0.0 OK: queued"


def _drop_connection(server: SMTP) -> None:
    """Close the client's connection at once; the reply aiosmtpd then writes goes nowhere, so
    the client sees the connection closed while it waits for one."""
    if server.transport is not None:
        server.transport.abort()
