"""`check_block`: one real authenticated no-op per saved block, against the sandbox's emulators."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from blocks import (
    EmailChannel,
    GoogleSheetsCredentials,
    JiraCredentials,
    NotionCredentials,
    OutboxChannel,
    SlackIncomingWebhook,
)
from moltbot.blockcheck import (
    SEND_HINT,
    TEST_MESSAGE_TEXT,
    BlockCheck,
    check_block,
    flag_unreachable,
    host_answers,
    parse_address,
    redacted_url,
)
from moltbot.blockdocs import saved_blocks
from moltbot.errors import InputError
from moltbot.sandbox import Sandbox
from moltbot.sandbox.sheets import sandbox_service_account_info
from moltbot.sandbox.smtp import SmtpSink

WRONG_NOTION_TOKEN = "ntn_wrong-check-token-4711"
WRONG_JIRA_TOKEN = "jira-wrong-check-token-4711"
SMTP_PASSWORD = "smtp-check-password-4711"


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once, never waited out."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def saved(sandbox: Sandbox, sandbox_blocks: list[str]) -> Sandbox:
    """The session sandbox, reset, with its `sandbox-*` blocks saved."""
    return sandbox


def fresh(prefix: str) -> str:
    """A block name no other test has saved (the Prefect API lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def one_line(check: BlockCheck) -> str:
    assert "\n" not in check.detail
    return check.detail


def test_sheets_token_exchange_only_without_a_spreadsheet(saved: Sandbox):
    check = check_block("sandbox-sheets")

    assert check.ok is True, check.detail
    assert check.block_type == "moltbot-google-sheets-credentials"
    assert check.target == f"{saved.base_url}/sheets"
    assert "got a token" in one_line(check)
    assert "no spreadsheet was read" in check.detail


def test_sheets_reads_the_named_spreadsheets_metadata(saved: Sandbox):
    spreadsheet_id = saved.state.sheets.create_spreadsheet("재고", {"Stock": [["sku"]]})

    check = check_block("sandbox-sheets", spreadsheet_id=spreadsheet_id)

    assert check.ok is True, check.detail
    assert "'재고'" in check.detail and "1 worksheet" in check.detail


def test_sheets_unknown_spreadsheet_names_the_service_account(saved: Sandbox):
    email = sandbox_service_account_info(f"{saved.base_url}/sheets/token")["client_email"]

    check = check_block("sandbox-sheets", spreadsheet_id="no-such-sheet")

    assert check.ok is False
    assert "'no-such-sheet' not found, or not shared with" in one_line(check)
    assert email in check.detail


def test_sheets_key_refused_by_the_token_endpoint(saved: Sandbox, prefect_api: str):
    name = fresh("check")
    info = sandbox_service_account_info(f"{saved.base_url}/sheets/token")
    GoogleSheetsCredentials(
        service_account_info={
            **info,
            "client_email": "someone-else@example.iam.gserviceaccount.com",
        },
        api_base_url=f"{saved.base_url}/sheets",
    ).save(name)

    check = check_block(name)

    assert check.ok is False
    assert one_line(check).startswith("the token was refused:")
    assert "someone-else@example.iam.gserviceaccount.com" in check.detail
    assert info["private_key"] not in check.model_dump_json()


def test_notion_users_me(saved: Sandbox):
    check = check_block("sandbox-notion")

    assert check.ok is True, check.detail
    assert "Notion accepted the token" in one_line(check)
    assert [r.path for r in saved.state.notion.core.requests] == ["/v1/users/me"]


def test_jira_myself(saved: Sandbox):
    check = check_block("sandbox-jira")

    assert check.ok is True, check.detail
    assert check.detail.startswith("Jira accepted sandbox@moltbot.local")


def test_jira_on_a_server_or_data_center_site_is_refused_by_name(saved: Sandbox):
    # Runs no longer read serverInfo (one request saved per run); the check still does.
    saved.state.jira.deployment_type = "Server"

    check = check_block("sandbox-jira")

    assert check.ok is False
    assert "deployment type 'Server'" in one_line(check)
    assert "Jira Cloud only" in one_line(check)
    paths = [r.path for r in saved.state.jira.core.requests]
    assert paths[-1].endswith("/serverInfo"), paths


@pytest.mark.parametrize(
    ("block", "token"),
    [
        (
            lambda base: NotionCredentials(token=WRONG_NOTION_TOKEN, base_url=f"{base}/notion"),
            WRONG_NOTION_TOKEN,
        ),
        (
            lambda base: JiraCredentials(
                server_url=f"{base}/jira", email="sandbox@moltbot.local", api_token=WRONG_JIRA_TOKEN
            ),
            WRONG_JIRA_TOKEN,
        ),
    ],
    ids=["notion", "jira"],
)
def test_a_wrong_token_is_refused_in_one_line_without_the_token(
    saved: Sandbox, prefect_api: str, block, token: str
):
    name = fresh("check")
    block(saved.base_url).save(name)

    check = check_block(name)

    assert check.ok is False
    assert one_line(check).startswith("the token was refused: 401")
    assert token not in check.detail
    assert token not in check.model_dump_json()


def test_smtp_sink_answers_noop_and_nothing_is_sent(saved: Sandbox):
    check = check_block("sandbox-email")

    assert check.ok is True, check.detail
    assert check.target == f"smtp://{saved.host}:{saved.smtp_port}"
    assert "NOOP with 250" in one_line(check)
    assert saved.smtp.messages == []


@pytest.fixture
def smtp_with_login() -> Iterator[SmtpSink]:
    with SmtpSink(username="ops@example.com", password=SMTP_PASSWORD) as sink:
        yield sink


def login_channel(sink: SmtpSink, password: str, tls: str = "none") -> EmailChannel:
    return EmailChannel(
        smtp_host=sink.host,
        smtp_port=sink.port,
        tls=tls,
        username="ops@example.com",
        password=password,
        sender="moltbot@example.com",
        recipients=["ops@example.com"],
    )


def test_smtp_login_accepted(prefect_api: str, smtp_with_login: SmtpSink):
    name = fresh("check")
    login_channel(smtp_with_login, SMTP_PASSWORD).save(name)

    check = check_block(name)

    assert check.ok is True, check.detail
    assert "login of 'ops@example.com' accepted" in check.detail
    assert smtp_with_login.messages == []


def test_smtp_login_refused(prefect_api: str, smtp_with_login: SmtpSink):
    name = fresh("check")
    login_channel(smtp_with_login, "not-the-password").save(name)

    check = check_block(name)

    assert check.ok is False
    assert "refused the login of 'ops@example.com' (535" in one_line(check)
    assert "not-the-password" not in check.detail


@pytest.mark.parametrize(
    ("tls", "expected"),
    [("ssl", "TLS mismatch: the TLS handshake"), ("starttls", "does not offer STARTTLS")],
    ids=["ssl", "starttls"],
)
def test_smtp_tls_mismatch(saved: Sandbox, prefect_api: str, tls: str, expected: str):
    name = fresh("check")
    EmailChannel(
        smtp_host=saved.host,
        smtp_port=saved.smtp_port,
        tls=tls,
        sender="moltbot@example.com",
        recipients=["ops@example.com"],
    ).save(name)

    check = check_block(name)

    assert check.ok is False
    assert expected in one_line(check)


def test_slack_without_send_is_not_contacted(saved: Sandbox):
    check = check_block("sandbox-slack")

    assert check.ok is None
    assert check.target == f"{saved.base_url}/slack/…"
    assert SEND_HINT.format(name="sandbox-slack") in one_line(check)
    assert saved.state.slack.attempts == 0


def test_slack_with_send_posts_one_marked_test_message(saved: Sandbox):
    check = check_block("sandbox-slack", send=True)

    assert check.ok is True, check.detail
    [post] = saved.state.slack.posts
    assert post.text == TEST_MESSAGE_TEXT["en"]
    assert "T0000" not in check.model_dump_json()  # the webhook path is its secret


def test_the_test_message_follows_the_locale(saved: Sandbox, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")

    check_block("sandbox-slack", send=True)

    assert [post.text for post in saved.state.slack.posts] == [TEST_MESSAGE_TEXT["ko"]]


def test_a_removed_slack_webhook_is_reported(saved: Sandbox, prefect_api: str):
    name = fresh("check")
    SlackIncomingWebhook(url=f"{saved.base_url}/slack/services/T0/B0/gone").save(name)

    check = check_block(name, send=True)

    assert check.ok is False
    assert "the webhook does not exist any more" in one_line(check)
    assert "gone" not in check.detail and "gone" not in (check.target or "")


def test_prefect_custom_webhook_ops_channel(saved: Sandbox):
    not_sent = check_block("sandbox-ops")
    sent = check_block("sandbox-ops", send=True)

    assert not_sent.ok is None and not_sent.block_type == "custom-webhook"
    assert sent.ok is True, sent.detail
    [post] = saved.state.slack.messages_for(saved.ops_webhook_url)
    assert TEST_MESSAGE_TEXT["en"] in post.text


def test_outbox_has_nothing_to_test(prefect_api: str, tmp_path):
    name = fresh("check")
    OutboxChannel(folder=str(tmp_path / "out")).save(name)

    check = check_block(name)

    assert check.ok is None
    assert check.detail.startswith("nothing to test")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda port: NotionCredentials(token="t", base_url=f"http://127.0.0.1:{port}/notion"),
        lambda port: JiraCredentials(
            server_url=f"http://127.0.0.1:{port}/jira", email="a@b.c", api_token="t"
        ),
        lambda port: EmailChannel(
            smtp_host="127.0.0.1",
            smtp_port=port,
            tls="none",
            sender="a@b.c",
            recipients=["a@b.c"],
        ),
        lambda port: GoogleSheetsCredentials(
            service_account_info=sandbox_service_account_info(f"http://127.0.0.1:{port}/token"),
            api_base_url=f"http://127.0.0.1:{port}/sheets",
        ),
        lambda port: SlackIncomingWebhook(url=f"http://127.0.0.1:{port}/services/T/B/x"),
    ],
    ids=["notion", "jira", "email", "sheets", "slack"],
)
def test_a_closed_port_does_not_answer(prefect_api: str, closed_port: int, make):
    name = fresh("check")
    make(closed_port).save(name)

    check = check_block(name, send=True)

    assert check.ok is False
    assert one_line(check).startswith(
        f"host 127.0.0.1:{closed_port} does not answer (connection refused)"
    )


def test_unknown_name_lists_the_saved_names(saved: Sandbox):
    with pytest.raises(InputError) as unknown:
        check_block("no-such-block")

    message = str(unknown.value)
    assert "'no-such-block'" in message and "\n" not in message
    assert "sandbox-notion" in message and "sandbox-slack" in message


def test_a_name_used_by_two_types_needs_the_type(prefect_api: str, closed_port: int):
    name = fresh("check-twice")
    NotionCredentials(token="t", base_url=f"http://127.0.0.1:{closed_port}").save(name)
    OutboxChannel(folder="/tmp/x").save(name)

    with pytest.raises(InputError, match=f"TYPE/{name}"):
        check_block(name)
    assert check_block(f"moltbot-outbox-channel/{name}").ok is None


def test_flag_unreachable_flags_the_closed_port_only(saved: Sandbox, closed_port: int):
    closed, outbox = fresh("check-flag-closed"), fresh("check-flag-outbox")
    NotionCredentials(token="t", base_url=f"http://127.0.0.1:{closed_port}/notion").save(closed)
    OutboxChannel(folder="/tmp/check-flag").save(outbox)
    mine = {
        closed,
        outbox,
        "sandbox-sheets",
        "sandbox-notion",
        "sandbox-jira",
        "sandbox-slack",
        "sandbox-email",
    }
    documents = [entry for entry in saved_blocks() if entry["name"] in mine]

    flagged = {entry["name"]: entry["host_answers"] for entry in flag_unreachable(documents)}

    assert flagged == {
        closed: False,
        outbox: None,
        "sandbox-sheets": True,
        "sandbox-notion": True,
        "sandbox-jira": True,
        "sandbox-slack": True,
        "sandbox-email": True,
    }


def test_host_answers(sandbox: Sandbox, closed_port: int):
    assert host_answers(f"{sandbox.base_url}/notion", timeout=5)
    assert host_answers(f"smtp://127.0.0.1:{sandbox.smtp_port}", timeout=5)
    assert not host_answers(f"127.0.0.1:{closed_port}", timeout=5)
    with pytest.raises(InputError, match="no host name"):
        host_answers("/just/a/folder", timeout=5)


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("https://api.notion.com", ("api.notion.com", 443)),
        ("http://127.0.0.1:8765/jira", ("127.0.0.1", 8765)),
        ("smtp://mail.example.com:587", ("mail.example.com", 587)),
        ("example.com", ("example.com", 443)),
        ("[::1]:25", ("::1", 25)),
    ],
)
def test_parse_address(target: str, address: tuple[str, int]):
    assert parse_address(target) == address


def test_redacted_url_keeps_host_and_first_segment_only():
    secret = "https://hooks.slack.com/services/T000/B000/XXXXsecret"

    assert redacted_url(secret) == "https://hooks.slack.com/services/…"
    assert redacted_url("https://user:pw@example.com/hook?token=abc") == (
        "https://example.com/hook/…"
    )
