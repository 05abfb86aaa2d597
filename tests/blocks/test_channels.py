"""Channel blocks against the sandbox: Slack webhook emulator, SMTP sink and outbox folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks import EmailChannel, OutboxChannel, SlackIncomingWebhook
from moltbot.errors import DeliveryError
from moltbot.messages import (
    SLACK_TEXT_LIMIT,
    Attachment,
    Message,
    slack_block_lines,
    slack_sections,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def make_message(**overrides: object) -> Message:
    fields: dict[str, object] = {
        "key": "test:2026-11-23",
        "automation": "test",
        "title": "일일 리포트 2026년 11월 23일",
        "text": "매출 ₩1,234,000 (+12.0%)",
        "markdown": "# 일일 리포트\n\n매출 ₩1,234,000",
        "html": '<p>매출 ₩1,234,000</p><img src="cid:chart">',
        "slack_blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*매출* ₩1,234,000"}}
        ],
        "attachments": [
            Attachment(
                filename="매출-차트.png", content_type="image/png", data=PNG, inline_id="chart"
            )
        ],
        "file_stem": "리포트-2026-11-23",
    }
    fields.update(overrides)
    return Message(**fields)


def test_slack_posts_block_kit_json_with_korean_text(sandbox) -> None:
    channel = SlackIncomingWebhook(url=sandbox.slack_webhook_url("channels"))

    assert channel.send(make_message()) is None

    [post] = sandbox.state.slack.posts
    # The notification text is the blocks' own, not the e-mail text beside them.
    assert post.payload["text"] == "*매출* ₩1,234,000"
    assert post.payload["blocks"][0]["text"]["text"] == "*매출* ₩1,234,000"


CANARY = "010-9876-5432 카나리아"


def test_slack_text_says_nothing_the_blocks_do_not() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Tea & <Co> digest"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*22 responses*\n\n• NPS +40"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Revenue* ₩1,234,000"},
                {"type": "plain_text", "text": "Orders 47"},
            ],
        },
        {"type": "divider"},
        {"type": "image", "image_url": "https://example.com/c.png", "alt_text": "chart"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "moltbot · Asia/Seoul"}]},
    ]
    message = make_message(
        text=f"# Digest\n\n- {CANARY}", markdown=f"- {CANARY}", slack_blocks=blocks
    )

    payload = SlackIncomingWebhook(url="http://127.0.0.1:9/hook").payload(message)

    assert payload["blocks"] == blocks
    assert payload["text"] == (
        "Tea &amp; &lt;Co&gt; digest\n*22 responses*\n• NPS +40\n*Revenue* ₩1,234,000\n"
        "Orders 47\nmoltbot · Asia/Seoul"
    )
    assert set(str(payload["text"]).splitlines()) <= set(slack_block_lines(blocks))
    assert CANARY not in str(payload)


def test_slack_text_is_whole_lines_within_slack_limit() -> None:
    lines = [f"• *SKU-{n:04}* {'x' * 90}" for n in range(200)]
    message = make_message(slack_blocks=slack_sections(lines))

    text = str(SlackIncomingWebhook(url="http://127.0.0.1:9/hook").payload(message)["text"])

    assert len(text) <= SLACK_TEXT_LIMIT
    assert text.splitlines() == lines[: len(text.splitlines())]
    assert len(text.splitlines()) == SLACK_TEXT_LIMIT // (len(lines[0]) + 1)


def test_slack_message_without_blocks_posts_its_text() -> None:
    message = make_message(text="moltbot test message", slack_blocks=None)

    payload = SlackIncomingWebhook(url="http://127.0.0.1:9/hook").payload(message)

    assert payload == {"text": "moltbot test message"}


@pytest.mark.parametrize(
    ("status", "transient"),
    [(429, True), (500, True), (503, True), (400, False), (404, False), (410, False)],
)
def test_slack_error_statuses_classified(sandbox, status: int, transient: bool) -> None:
    sandbox.state.slack.inject_fault(status, retry_after=3 if status == 429 else None)
    channel = SlackIncomingWebhook(url=sandbox.slack_webhook_url("channels"))

    with pytest.raises(DeliveryError) as raised:
        channel.send(make_message())

    assert raised.value.status == status
    assert raised.value.transient is transient
    assert str(raised.value).startswith(f"Slack answered {status} ")
    assert raised.value.retry_after == (3.0 if status == 429 else None)
    assert sandbox.state.slack.posts == []


def test_slack_error_never_shows_the_webhook_url(sandbox) -> None:
    url = sandbox.slack_webhook_url("secret-hook")
    sandbox.state.slack.inject_fault(400, body="invalid_payload")

    with pytest.raises(DeliveryError) as raised:
        SlackIncomingWebhook(url=url).send(make_message())

    assert str(raised.value) == "Slack answered 400 invalid_payload"
    assert url not in repr(raised.value.__dict__)


def test_slack_unreachable_is_transient_and_hides_url() -> None:
    channel = SlackIncomingWebhook(url="http://127.0.0.1:9/services/T/B/tok", timeout_seconds=2)

    with pytest.raises(DeliveryError) as raised:
        channel.send(make_message())

    assert raised.value.transient is True
    assert "127.0.0.1" not in str(raised.value)


def test_slack_url_is_secret_in_the_block() -> None:
    channel = SlackIncomingWebhook(url="https://hooks.slack.com/services/T1/B2/supersecret")

    assert "supersecret" not in repr(channel)
    assert "supersecret" not in str(channel.model_dump())


@pytest.fixture
def email_channel(sandbox) -> EmailChannel:
    return EmailChannel(
        smtp_host="127.0.0.1",
        smtp_port=sandbox.smtp_port,
        tls="none",
        sender="bot@example.com",
        recipients=["ops@example.com", "lead@example.com"],
    )


def test_email_has_text_html_and_inline_chart_with_korean_subject(sandbox, email_channel) -> None:
    message_id = email_channel.send(make_message())

    [mail] = sandbox.smtp.messages
    assert mail.subject == "일일 리포트 2026년 11월 23일"
    assert mail.rcpt_tos == ["ops@example.com", "lead@example.com"]
    assert mail.message["Message-ID"] == message_id
    assert mail.text.strip() == "매출 ₩1,234,000 (+12.0%)"
    html = mail.message.get_body(preferencelist=("html",))
    assert "매출 ₩1,234,000" in html.get_content()
    [image] = [part for part in mail.message.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<chart>"
    assert image.get_content() == PNG


def test_email_transient_and_permanent_smtp_replies(sandbox, email_channel) -> None:
    channel = email_channel
    sandbox.smtp.inject_fault(code=451, count=1)
    with pytest.raises(DeliveryError) as transient:
        channel.send(make_message())
    sandbox.smtp.inject_fault(code=550, count=1)
    with pytest.raises(DeliveryError) as permanent:
        channel.send(make_message())

    assert (transient.value.transient, transient.value.status) == (True, 451)
    assert (permanent.value.transient, permanent.value.status) == (False, 550)
    assert sandbox.smtp.messages == []


def test_email_bad_password_fails_fast_without_the_password() -> None:
    from moltbot.sandbox import SmtpSink

    with SmtpSink(username="bot", password="right-password") as sink:
        channel = EmailChannel(
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            tls="none",
            username="bot",
            password="wrong-password",
            sender="bot@example.com",
            recipients=["ops@example.com"],
            timeout_seconds=5,
        )
        with pytest.raises(DeliveryError) as raised:
            channel.send(make_message())
        assert sink.messages == []

    assert raised.value.transient is False
    assert raised.value.status == 535
    assert "wrong-password" not in str(raised.value)


def test_outbox_writes_markdown_html_and_chart_with_korean_names(tmp_path: Path) -> None:
    channel = OutboxChannel(folder=str(tmp_path / "out"))

    written = channel.send(make_message())

    folder = tmp_path / "out"
    assert written == str(folder / "리포트-2026-11-23.md")
    assert (folder / "리포트-2026-11-23.md").read_text() == "# 일일 리포트\n\n매출 ₩1,234,000"
    html = (folder / "리포트-2026-11-23.html").read_text()
    assert 'src="매출-차트.png"' in html
    assert (folder / "매출-차트.png").read_bytes() == PNG
    assert not [path for path in folder.iterdir() if path.name.startswith(".tmp-")]


def test_outbox_defaults_to_moltbot_home(moltbot_home: Path) -> None:
    OutboxChannel().send(make_message(file_stem="plain", html=None, attachments=[]))

    assert (moltbot_home / "outbox" / "plain.md").is_file()


def test_outbox_unwritable_folder_is_a_permanent_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    with pytest.raises(DeliveryError) as raised:
        OutboxChannel(folder=str(blocker / "sub")).send(make_message())

    assert raised.value.transient is False


def test_channel_blocks_save_and_load_with_secrets_hidden(prefect_api: str) -> None:
    SlackIncomingWebhook(url="https://hooks.slack.com/services/T1/B2/tok-123").save(
        "test-slack", overwrite=True
    )
    EmailChannel(
        smtp_host="smtp.example.com",
        password="p4ssw0rd",
        sender="bot@example.com",
        recipients=["ops@example.com"],
    ).save("test-email", overwrite=True)

    slack = SlackIncomingWebhook.load("test-slack")
    email = EmailChannel.load("test-email")

    assert slack.url.get_secret_value() == "https://hooks.slack.com/services/T1/B2/tok-123"
    assert email.password is not None and email.password.get_secret_value() == "p4ssw0rd"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "test-email", "moltbot-email-channel", include_secrets=False
        )
    assert "p4ssw0rd" not in str(document.data)


@pytest.fixture
def prefect_requests(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request this process's Prefect clients send from now on, as `METHOD /path`."""
    from prefect.client.base import PrefectHttpxSyncClient

    sent: list[str] = []
    send = PrefectHttpxSyncClient.send

    def noting(self: PrefectHttpxSyncClient, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(f"{request.method} {request.url.path}")
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(PrefectHttpxSyncClient, "send", noting)
    return sent


def test_a_channel_name_is_found_across_every_channel_type_in_one_api_request(
    prefect_api: str, prefect_requests: list[str]
) -> None:
    from blocks import DoorayIncomingHook
    from moltbot.effects.channels import load_channel
    from moltbot.errors import InputError

    # Dooray! is the last of the ten channel types: looked up type by type, ten requests.
    DoorayIncomingHook(url="https://hook.dooray.com/services/1/2/tok-dooray").save(
        "test-dooray-last", overwrite=True
    )
    prefect_requests.clear()

    channel = load_channel("test-dooray-last")

    assert isinstance(channel, DoorayIncomingHook)
    assert channel.url.get_secret_value() == "https://hook.dooray.com/services/1/2/tok-dooray"
    assert prefect_requests == ["POST /api/block_documents/filter"]
    with pytest.raises(InputError, match=r"unknown channel 'test-no-such' \(choose from: outbox, "):
        load_channel("test-no-such")


def test_saving_the_same_values_again_reads_once_and_a_change_is_written(
    prefect_api: str, prefect_requests: list[str]
) -> None:
    from moltbot.blockdocs import save_block_document

    url = "https://hooks.slack.com/services/T1/B2/tok-same"
    assert save_block_document(SlackIncomingWebhook(url=url), "test-same-values") is True
    prefect_requests.clear()

    assert save_block_document(SlackIncomingWebhook(url=url), "test-same-values") is False
    assert [request.split()[0] for request in prefect_requests] == ["GET"]
    # A different secret is a change, though the API shows secrets only when asked for them.
    changed = "https://hooks.slack.com/services/T1/B2/tok-changed"
    assert save_block_document(SlackIncomingWebhook(url=changed), "test-same-values") is True
    loaded = SlackIncomingWebhook.load("test-same-values")
    assert loaded.url.get_secret_value() == changed
