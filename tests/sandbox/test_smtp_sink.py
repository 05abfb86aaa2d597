"""SMTP sink, driven with the real smtplib client."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from moltbot.sandbox import Sandbox, SmtpSink
from moltbot.sandbox.server import SandboxError

# A valid 1x1 PNG, small enough to inline.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def auth_sink() -> Iterator[SmtpSink]:
    with SmtpSink(username="bot@example.com", password="s3cret-pass") as sink:
        yield sink


@pytest.fixture
def sink(sandbox: Sandbox) -> SmtpSink:
    """The session sandbox's plain sink (conftest.py clears it around each test)."""
    return sandbox.smtp


def _message(subject: str = "hello", body: str = "body") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "moltbot@example.com"
    msg["To"] = "ops@example.com"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def _client(sink: SmtpSink) -> smtplib.SMTP:
    # A timeout so that a sink that never answers fails the test instead of hanging it.
    return smtplib.SMTP(sink.host, sink.port, timeout=5)


def test_plain_message_is_received(sink: SmtpSink):
    with _client(sink) as smtp:
        smtp.send_message(_message("hello", "first line"), to_addrs=["a@x.kr", "b@x.kr"])

    [mail] = sink.messages
    assert mail.mail_from == "moltbot@example.com"
    assert mail.rcpt_tos == ["a@x.kr", "b@x.kr"]
    assert mail.subject == "hello"
    assert mail.text == "first line\n"
    assert b"Subject: hello" in mail.raw


def test_multipart_with_inline_png_and_korean_subject_round_trips(sink: SmtpSink):
    subject = "[moltbot] 11월 주간 매출 보고서 📈"
    text = "안녕하세요,\n이번 주 매출은 1,250,000원입니다.\n"
    cid = make_msgid(domain="moltbot.local")
    msg = _message(subject, text)
    msg.add_alternative(f'<p>매출 차트</p><img src="cid:{cid[1:-1]}">', subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid=cid, filename="chart.png")

    with _client(sink) as smtp:
        smtp.send_message(msg)

    [mail] = sink.messages
    # The header travelled RFC 2047-encoded, not as raw UTF-8...
    assert subject.encode() not in mail.raw
    # ...and is decoded back on parsing.
    assert mail.subject == subject
    assert mail.text == text
    html = mail.message.get_body(preferencelist=("html",))
    assert "매출 차트" in html.get_content()
    [image] = [part for part in mail.message.walk() if part.get_content_type() == "image/png"]
    assert image.get_content() == PNG
    assert image["Content-ID"] == cid


def test_auth_success(auth_sink: SmtpSink):
    auth_sink.clear()
    with _client(auth_sink) as smtp:
        smtp.login("bot@example.com", "s3cret-pass")
        smtp.send_message(_message("authenticated"))

    assert [m.subject for m in auth_sink.messages] == ["authenticated"]


def test_auth_failure_is_535_not_a_hang(auth_sink: SmtpSink):
    auth_sink.clear()
    with _client(auth_sink) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as err:
        smtp.login("bot@example.com", "wrong")

    assert err.value.smtp_code == 535
    assert auth_sink.messages == []


def test_auth_is_required_when_credentials_are_set(auth_sink: SmtpSink):
    auth_sink.clear()
    with _client(auth_sink) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as err:
        smtp.send_message(_message("anonymous"))

    assert err.value.smtp_code == 530
    assert auth_sink.messages == []


def test_transient_fault_then_success(sink: SmtpSink):
    sink.inject_fault(code=451, count=1)

    with _client(sink) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as err:
            smtp.send_message(_message("try 1"))
        smtp.send_message(_message("try 2"))

    assert err.value.smtp_code == 451
    assert b"4.3.0 Try again later" in err.value.smtp_error
    assert [m.subject for m in sink.messages] == ["try 2"]
    assert [r.reply for r in sink.rejected] == ["451 4.3.0 Try again later"]


def test_permanent_fault_count_is_honoured(sink: SmtpSink):
    sink.inject_fault(code=550, count=2, message="5.7.1 Relaying denied")

    codes = []
    with _client(sink) as smtp:
        for i in range(3):
            try:
                smtp.send_message(_message(f"try {i}"))
                codes.append(250)
            except smtplib.SMTPDataError as exc:
                codes.append(exc.smtp_code)

    assert codes == [550, 550, 250]
    assert [m.subject for m in sink.messages] == ["try 2"]


def test_drop_closes_the_connection_with_or_without_the_mail(sink: SmtpSink):
    sink.inject_fault(kind="drop")
    sink.inject_fault(kind="drop", after_accept=True)

    for subject in ("dropped", "accepted"):
        with _client(sink) as smtp, pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.send_message(_message(subject))

    assert [(m.subject, m.reply_lost) for m in sink.messages] == [("accepted", True)]
    assert [r.reply for r in sink.rejected] == ["(connection dropped without a reply)"]


def test_a_random_share_of_faults_repeats_with_the_seed(sink: SmtpSink):
    def codes() -> list[int]:
        sink.clear()
        sink.reseed(3)
        sink.inject_fault(451, count=None, probability=0.3)
        answered = []
        with _client(sink) as smtp:
            for number in range(40):
                try:
                    smtp.send_message(_message(f"try {number}"))
                    answered.append(250)
                except smtplib.SMTPDataError as exc:
                    answered.append(exc.smtp_code)
        return answered

    first = codes()
    assert 0 < first.count(451) < 40
    assert codes() == first


@pytest.mark.parametrize("code", [250, 399, 600])
def test_inject_fault_refuses_non_error_codes(sink: SmtpSink, code: int):
    with pytest.raises(ValueError):
        sink.inject_fault(code=code)


def test_clear_forgets_mail_and_faults(sink: SmtpSink):
    sink.inject_fault(451, count=5)
    with _client(sink) as smtp, pytest.raises(smtplib.SMTPDataError):
        smtp.send_message(_message())
    sink.clear()

    with _client(sink) as smtp:
        smtp.send_message(_message("after clear"))

    assert [m.subject for m in sink.messages] == ["after clear"]
    assert sink.rejected == []


def test_stop_releases_the_port_and_restart_works():
    sink = SmtpSink().start()
    port = sink.port
    sink.stop()

    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with SmtpSink(port=port) as again, _client(again) as smtp:
        assert smtp.noop()[0] == 250


def test_port_in_use_raises_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(SandboxError, match=f"127.0.0.1:{port}.*already in use"):
            SmtpSink(port=port).start()


def test_port_is_unknown_before_start():
    with pytest.raises(RuntimeError):
        _ = SmtpSink().port
    assert SmtpSink(port=2525).port == 2525
