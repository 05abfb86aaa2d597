"""The sandbox inbox: what the real clients sent, shown as HTML live and as a static copy."""

from __future__ import annotations

import html
import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from jira import JIRA
from notion_client import Client
from slack_sdk.webhook import WebhookClient

from blocks.notion import NotionCredentials
from moltbot.sandbox import Sandbox
from moltbot.sandbox.inbox import inbox_url, save_static_inbox
from moltbot.sandbox.jira import SANDBOX_JIRA_EMAIL, SANDBOX_JIRA_TOKEN
from moltbot.sandbox.notion import (
    SANDBOX_DIGEST_DATA_SOURCE_ID,
    SANDBOX_DIGEST_DATABASE_ID,
    SANDBOX_ROOT_PAGE_ID,
)

# A valid 1x1 PNG, small enough to inline.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
SUBJECT = "[moltbot] 11월 주간 매출 보고서 📈"


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, timeout=5) as client:
        yield client


@pytest.fixture
def notion(notion_credentials: NotionCredentials) -> Iterator[Client]:
    client = notion_credentials.get_client()
    yield client
    client.close()


@pytest.fixture
def jira(sandbox: Sandbox) -> Iterator[JIRA]:
    auth = (SANDBOX_JIRA_EMAIL, SANDBOX_JIRA_TOKEN)
    client = JIRA(server=f"{sandbox.base_url}/jira", basic_auth=auth, max_retries=0, timeout=5)
    yield client
    client.close()


def post_report(sandbox: Sandbox) -> None:
    response = WebhookClient(sandbox.sandbox_webhook_url).send(
        text="주간 매출 보고서가 준비되었습니다",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "주간 매출 보고서"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (
                        "매출 *1,250,000원* _(+12%)_ · <https://example.com/r?a=1&b=2|보고서 열기>"
                    ),
                },
                "fields": [
                    {"type": "mrkdwn", "text": "*주문*\n42건"},
                    {"type": "mrkdwn", "text": "*환불*\n1건"},
                ],
            },
            {"type": "divider"},
            {
                "type": "image",
                "image_url": "https://example.com/chart.png",
                "alt_text": "매출 차트",
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": ":warning: 재고 확인"}]},
        ],
    )
    assert response.status_code == 200


def send_mail(sandbox: Sandbox) -> str:
    """An HTML mail with an inline PNG and a text part; returns the image's Content-ID."""
    cid = make_msgid(domain="moltbot.local")
    msg = EmailMessage()
    msg["From"] = "moltbot@example.com"
    msg["To"] = "ops@example.com"
    msg["Subject"] = SUBJECT
    msg.set_content("이번 주 매출은 1,250,000원입니다.\n")
    msg.add_alternative(
        f'<h1>매출 차트</h1><p>합계 &lt;확인&gt;</p><img src="cid:{cid[1:-1]}" alt="chart">',
        subtype="html",
    )
    msg.get_payload()[1].add_related(PNG, "image", "png", cid=cid, filename="chart.png")
    with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=5) as smtp:
        smtp.send_message(msg)
    return cid


def create_notion_page(notion: Client) -> dict[str, Any]:
    def text(content: str, url: str | None = None) -> list[dict[str, Any]]:
        return [{"text": {"content": content, "link": {"url": url} if url else None}}]

    return notion.pages.create(
        parent={"data_source_id": SANDBOX_DIGEST_DATA_SOURCE_ID},
        properties={
            "Name": {"title": text("11월 설문 요약")},
            "Responses": {"number": 42},
            "Status": {"select": {"name": "New"}},
        },
        children=[
            {"type": "heading_2", "heading_2": {"rich_text": text("요약")}},
            {
                "type": "paragraph",
                "paragraph": {
                    "rich_text": [
                        *text("응답 42건, "),
                        *text("원본 시트", "https://example.com/sheet"),
                    ]
                },
            },
            {"type": "bulleted_list_item", "bulleted_list_item": {"rich_text": text("배송 빠름")}},
            {
                "type": "bulleted_list_item",
                "bulleted_list_item": {"rich_text": text("포장 <좋음>")},
            },
            {
                "type": "table",
                "table": {
                    "table_width": 2,
                    "has_column_header": True,
                    "children": [
                        {"type": "table_row", "table_row": {"cells": [text("항목"), text("점수")]}},
                        {
                            "type": "table_row",
                            "table_row": {"cells": [text("만족도"), text("4.6")]},
                        },
                    ],
                },
            },
            {
                "type": "callout",
                "callout": {"rich_text": text("검토 필요 2건"), "icon": {"emoji": "🚨"}},
            },
        ],
    )


def create_issue(jira: JIRA, assignee: str) -> Any:
    issue = jira.create_issue(
        fields={
            "project": {"key": "OPS"},
            "issuetype": {"name": "Bug"},
            "summary": "결제 실패 <확인 필요>",
            "description": "고객 문의 3건\nhttps://example.com/ticket/9",
            "priority": {"name": "High"},
            "labels": ["payments", "moltbot"],
            "components": [{"name": "Payments"}],
            "duedate": "2025-12-01",
            "assignee": {"accountId": assignee},
        }
    )
    jira.add_comment(issue, "환불 처리 완료")
    return issue


def image_urls(page: str) -> list[str]:
    # The body sits in an iframe's srcdoc, attribute-escaped once.
    return re.findall(r'<img src="([^"]+)"', html.unescape(page))


def test_inbox_shows_what_each_client_sent_and_its_links_resolve(
    sandbox: Sandbox, http: httpx.Client, notion: Client, jira: JIRA, tmp_path: Path
):
    post_report(sandbox)
    send_mail(sandbox)
    page = create_notion_page(notion)
    issue = create_issue(jira, sandbox.state.jira.user_by_name("김민지").account_id)

    index = http.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    body = index.text
    assert '<meta charset="utf-8">' in body
    # Slack: Block Kit as Slack shows it, mrkdwn lightly formatted, links clickable.
    assert '<h3 class="sk-header">주간 매출 보고서</h3>' in body
    assert "<b>1,250,000원</b>" in body and "<i>(+12%)</i>" in body
    assert '<a href="https://example.com/r?a=1&amp;b=2">보고서 열기</a>' in body
    assert "<b>주문</b>\n42건" in body
    assert '<img class="" src="https://example.com/chart.png" alt="매출 차트">' in body
    assert "⚠️ 재고 확인" in body
    # E-mail, Notion and Jira rows, user text escaped.
    assert html.escape(SUBJECT, quote=False) in body
    assert "11월 설문 요약" in body
    assert "결제 실패 &lt;확인 필요&gt;" in body and "<확인 필요>" not in body
    assert http.get("/inbox").text == body

    # The mail page renders the HTML part, its cid: image served by the sink with its type.
    mail_page = http.get("/inbox/mail/1").text
    assert "매출 차트" in mail_page and "합계 &amp;lt;확인&amp;gt;" in mail_page
    [image_url] = image_urls(mail_page)
    assert image_url.startswith("/inbox/mail/1/part/")
    image = http.get(image_url)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == PNG
    assert "이번 주 매출은 1,250,000원입니다." in mail_page  # the text part, folded away

    # The URL the Notion API answered is a page of the sandbox itself.
    assert page["url"].startswith(f"{sandbox.base_url}/inbox/notion/")
    notion_page = httpx.get(page["url"])
    assert notion_page.status_code == 200
    assert notion_page.headers["content-type"] == "text/html; charset=utf-8"
    shown = notion_page.text
    assert "<h1>11월 설문 요약</h1>" in shown
    assert "<h3>요약</h3>" in shown
    assert '<a href="https://example.com/sheet">원본 시트</a>' in shown
    assert "<ul><li>배송 빠름</li><li>포장 &lt;좋음&gt;</li></ul>" in shown
    assert "<th>항목</th><th>점수</th>" in shown and "<td>만족도</td><td>4.6</td>" in shown
    assert "🚨" in shown and "검토 필요 2건" in shown
    assert "<tr><th>Responses</th><td>42</td></tr>" in shown
    assert ">moltbot digests</a>" in shown  # its database, linked

    # The Jira client's browse link renders the issue.
    permalink = issue.permalink()
    assert permalink == f"{sandbox.base_url}/jira/browse/{issue.key}"
    issue_page = httpx.get(permalink)
    assert issue_page.status_code == 200
    shown = issue_page.text
    assert f"<h1>{issue.key} 결제 실패 &lt;확인 필요&gt;</h1>" in shown
    for value in ("Bug", "High", "payments", "Payments", "2025-12-01", "김민지", "환불 처리 완료"):
        assert value in shown
    assert "고객 문의 3건" in shown
    assert '<a href="https://example.com/ticket/9">' in shown

    # The static copy holds the same, with relative links and the image as a file.
    saved = save_static_inbox(sandbox, tmp_path / "inbox")
    assert saved == tmp_path / "inbox" / "index.html"
    static = saved.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in static
    for item in (
        '<h3 class="sk-header">주간 매출 보고서</h3>',
        html.escape(SUBJECT, quote=False),
        "11월 설문 요약",
        "결제 실패 &lt;확인 필요&gt;",
    ):
        assert item in static
    assert 'href="/' not in static
    assert 'href="mail-1.html"' in static
    notion_file = f"notion-{page['id'].replace('-', '')}.html"
    assert f'href="{notion_file}"' in static
    assert f'href="jira-{issue.key}.html"' in static
    [saved_image] = image_urls((saved.parent / "mail-1.html").read_text(encoding="utf-8"))
    assert saved_image == "mail-1/chart.png"
    assert (saved.parent / saved_image).read_bytes() == PNG
    assert "<h1>11월 설문 요약</h1>" in (saved.parent / notion_file).read_text(encoding="utf-8")
    assert "환불 처리 완료" in (saved.parent / f"jira-{issue.key}.html").read_text("utf-8")


def test_content_is_escaped_and_unsafe_links_are_not_links(sandbox: Sandbox, http: httpx.Client):
    webhook = WebhookClient(sandbox.sandbox_webhook_url)
    webhook.send(text="<script>alert(1)</script> <javascript:alert(2)|click me> \"q\" & 'a'")
    webhook.send(
        text="fallback",
        blocks=[
            {"type": "section", "text": {"type": "plain_text", "text": "<img src=x onerror=y>"}},
            {"type": "image", "image_url": "javascript:alert(3)", "alt_text": '"><b>x</b>'},
        ],
    )

    body = http.get("/").text

    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "javascript:" not in body.replace("&lt;javascript:alert(2)|click me&gt;", "")
    assert "&lt;img src=x onerror=y&gt;" in body and "<img src=x" not in body
    assert "<b>x</b>" not in body
    assert "&#34;q&#34; &amp; &#39;a&#39;" in body


def test_an_empty_sandbox_says_nothing_arrived_yet(sandbox: Sandbox, http: httpx.Client):
    response = http.get("/")

    assert response.status_code == 200
    assert "Nothing received yet" in response.text
    assert "moltbot demo" in response.text
    # The seeded Notion root page and database are not news.
    assert "moltbot sandbox inbox" in response.text and "moltbot digests" not in response.text


def test_root_answers_json_to_a_client_that_asks_for_it(http: httpx.Client):
    listing = http.get("/", headers={"Accept": "application/json"})

    assert listing.headers["content-type"] == "application/json"
    assert [s["name"] for s in listing.json()["services"]][:5] == [
        "slack",
        "sheets",
        "notion",
        "jira",
        "targets",
    ]
    assert http.get("/_sandbox").json() == listing.json()
    # A browser's Accept lists HTML first, among others.
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert (
        http.get("/", headers={"Accept": browser}).headers["content-type"].startswith("text/html")
    )


@pytest.mark.parametrize(
    "path",
    [
        "/inbox/mail/1",
        "/inbox/mail/1/part/nothing@here",
        "/inbox/mail/0/raw",
        "/inbox/notion/00000000000040008000000000000000",
        "/inbox/notion/not-an-id",
        "/jira/browse/OPS-999",
    ],
)
def test_unknown_items_are_an_html_404(http: httpx.Client, path: str):
    response = http.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text


def test_a_text_only_mail_shows_its_text_and_raw_source(sandbox: Sandbox, http: httpx.Client):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@x.kr", "b@x.kr", "재고 알림"
    msg.set_content("MB-003 <품절>\n")
    with smtplib.SMTP("127.0.0.1", sandbox.smtp_port, timeout=5) as smtp:
        smtp.send_message(msg)

    page = http.get("/inbox/mail/1").text
    raw = http.get("/inbox/mail/1/raw")

    assert '<pre class="mailtext">MB-003 &lt;품절&gt;\n</pre>' in page
    assert "<iframe" not in page
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["content-security-policy"] == "sandbox"
    assert "MB-003 <품절>" in raw.text


def test_notion_database_url_lists_its_pages(sandbox: Sandbox, notion: Client):
    page = create_notion_page(notion)
    database = notion.databases.retrieve(page["parent"]["database_id"])

    shown = httpx.get(database["url"])

    assert shown.status_code == 200
    assert "moltbot digests" in shown.text
    assert f'href="/inbox/notion/{page["id"].replace("-", "")}"' in shown.text


def test_static_copy_of_a_stopped_sandbox_points_sandbox_links_at_its_files(tmp_path: Path):
    with Sandbox() as sandbox:
        issue_key = sandbox.state.jira.create_issue(
            {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "확인"}
        )
        link = f"{sandbox.base_url}/jira/browse/{issue_key}"
        WebhookClient(sandbox.sandbox_webhook_url).send(text=f"새 티켓 <{link}|{issue_key}>")
        address = inbox_url(sandbox)
        assert httpx.get(address).status_code == 200
    assert not sandbox.running

    index = save_static_inbox(sandbox, tmp_path / "나의 inbox")

    text = index.read_text(encoding="utf-8")
    assert f'새 티켓 <a href="jira-{issue_key}.html">{issue_key}</a>' in text
    assert (index.parent / f"jira-{issue_key}.html").is_file()
    assert sorted(p.name for p in index.parent.iterdir()) == sorted(
        [
            "index.html",
            f"jira-{issue_key}.html",
            f"notion-{SANDBOX_DIGEST_DATABASE_ID.replace('-', '')}.html",
            f"notion-{SANDBOX_ROOT_PAGE_ID.replace('-', '')}.html",
        ]
    )


def test_messenger_and_sms_messages_are_listed_escaped(sandbox: Sandbox, http: httpx.Client):
    from twilio.rest import Client as TwilioClient

    from moltbot.sandbox.twilio import (
        SANDBOX_ACCOUNT_SID,
        SANDBOX_AUTH_TOKEN,
        SANDBOX_FROM_NUMBER,
    )

    jandi = httpx.post(
        sandbox.jandi_webhook_url("ops"),
        json={"body": "재고 부족: <b>텀블러</b>"},
        headers={"Accept": "application/vnd.tosslab.jandi-v2+json"},
    )
    twilio = TwilioClient(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN)
    twilio.api.base_url = f"{sandbox.base_url}/twilio"
    twilio.messages.create(to="+821012345678", from_=SANDBOX_FROM_NUMBER, body="서버 다운: api")

    body = http.get("/").text

    assert jandi.status_code == 200
    assert "Messengers and SMS (2)" in body
    assert "재고 부족: &lt;b&gt;텀블러&lt;/b&gt;" in body and "<b>텀블러" not in body
    assert "SMS (Twilio)" in body and "+821012345678" in body and "서버 다운: api" in body
