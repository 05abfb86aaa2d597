"""Canaries: known secrets and personal data fed to every automation, then searched everywhere.

Known secret values sit in the blocks (the sandbox's tokens, key and webhook URLs, and canary
ones of our own, a health check's secret header among them); canary e-mail addresses, Korean
phone numbers, a resident registration number, a card number and a bank account go in form
answers, event payloads, a webhook inbox entry, files that are not UTF-8, the error lines of
log files, signed Stripe events posted to the webhook gateway, and a health page that echoes
them. Every automation runs, through the CLI as a user runs it, including failing runs (401,
400, 5xx, bad input, a service down), and one run goes through a process of its own as `serve`
and workers start it; reconcile runs last, over everything the others recorded. Then every
place a value could end up is read back: stdout and stderr, the log file, Prefect's logs, flow
runs (parameters, state messages), artifacts and events through the API, every text column of
every table of the ledger database, the outbox files, and what every sandbox service stored
(the health targets' request log included). A canary may appear only where a route allows it
(a free-text answer in e-mail, Notion, the outbox and the digest artifact; an event as received
in the webhook inbox); the summary printed says how much of each place was read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from typer.testing import CliRunner

from moltbot.cli import app
from moltbot.sandbox import Sandbox
from moltbot.sandbox.smtp import SmtpSink
from tests.e2e.servers import HANG_GUARD_SECONDS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
RUN = uuid.uuid4().hex[:10]
SEOUL = ZoneInfo("Asia/Seoul")

# --------------------------------------------------------------------------- canaries

# Places a value may reach because a route sends it there: a free-text answer goes to e-mail,
# Notion and the outbox, and the digest artifact lists answers (with contact details masked).
# A delivery that has not succeeded yet keeps its payload in the ledger for the replay.
FREE_TEXT_PLACES = ("smtp", "notion", "outbox", "ledger:effects.payload")
# The form digest's artifact lists the answers (contact details masked), and its events carry it.
ARTIFACT_PLACES = ("artifacts", "events (artifact)")
# The inputs themselves: the webhook inbox keeps each event as received, to dispatch it, and
# shadow mode keeps what a real run read, to replay it (pruned after its retention limit).
SHADOW_INPUT_PLACES = ("ledger:recorded_inputs.payload",)
INBOX_PLACES = ("ledger:webhook_inbox.event", *SHADOW_INPUT_PLACES)
SHADOW_PLACES = (*SHADOW_INPUT_PLACES, "ledger:recorded_inputs.effects")


@dataclass(frozen=True)
class Canary:
    """A value that must not show up anywhere but its `allowed` places (prefixes of a place)."""

    name: str
    value: str
    allowed: tuple[str, ...] = ()

    @property
    def forms(self) -> tuple[str, ...]:
        """The value, and for a number its bare digits too (a reformatted copy is a leak)."""
        digits = re.sub(r"\D", "", self.value)
        if len(digits) >= 9 and digits != self.value:
            return (self.value, digits)
        return (self.value,)


def luhn_complete(prefix: str) -> str:
    """`prefix` with the check digit that makes it a valid card number."""
    digits = [int(d) for d in prefix]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return prefix + str((10 - total % 10) % 10)


CARD = luhn_complete("453977312468000")
EMAIL_LOCAL = f"canary.lee.{RUN}"
CANARY_EMAIL = f"{EMAIL_LOCAL}@example.com"
MOBILE = "010-7731-2468"
MOBILE_PACKED = "01077312469"
LANDLINE = "02-7731-2460"
LANDLINE_BRACKETED = "(031) 773-1246"
RRN = "880214-2773125"
CARD_GROUPED = " ".join(CARD[i : i + 4] for i in range(0, 16, 4))
ACCOUNT = "110-773-124680"
# A free-text answer of the form digest: allowed where free text goes, never in chat.
FREE_MARKER = f"카나리아 자유응답 {RUN}"
FREE_PHONE = "010-5501-7731"
FREE_EMAIL_LOCAL = f"free.text.{RUN}"

# Block secrets: ours (the canary blocks) and the sandbox's (its fixed credentials).
SLACK_NAME = f"canary-{RUN}"
SMTP_USER = "canary-smtp-user"
SMTP_PASSWORD = f"smtp-pw-{RUN}-canary"
WRONG_SMTP_PASSWORD = f"smtp-wrong-{RUN}-canary"
NOTION_WRONG_TOKEN = f"notion-wrong-{RUN}-canary"
JIRA_WRONG_TOKEN = f"jira-wrong-{RUN}-canary"
DB_PASSWORD = f"dbpw-{RUN}-canary"
# A health check's secret header (an HttpHeaders block) and the Stripe signing secret the
# gateway verifies with.
HEADER_SECRET = f"hdr-{RUN}-canary-key"
STRIPE_SIGNING_SECRET = f"whsec_{RUN}canary"
# A token an application wrote into its error log: hex digits, then letters only. An error
# signature replaces the hex part with `<hex>`; only masking the token whole keeps its tail out.
LOG_TOKEN_TAIL = "LogTokenTail" + RUN.translate(str.maketrans("0123456789", "ghijklmnop"))
LOG_TOKEN = f"9f3a2b7c-{LOG_TOKEN_TAIL}"
# A Stripe customer id: it names the customer at Stripe, so it stays in the inbox too.
CUSTOMER_ID = f"cus_CanaryLee{RUN}"


def personal_canaries() -> list[Canary]:
    """The personal data in form answers, event payloads and files, and where each may go."""
    inbox = INBOX_PLACES
    return [
        Canary("email (local part)", EMAIL_LOCAL, inbox),
        Canary("mobile", MOBILE, inbox),
        Canary("mobile, no separators", MOBILE_PACKED, inbox),
        Canary("landline", LANDLINE, inbox),
        Canary("landline, area code in brackets", LANDLINE_BRACKETED, inbox),
        Canary("resident registration number", RRN, inbox),
        Canary("card number", CARD, inbox),
        Canary("card number, grouped", CARD_GROUPED, inbox),
        Canary("bank account", ACCOUNT, inbox),
        Canary("stripe customer id", CUSTOMER_ID, inbox),
        Canary("token in an application's error log (its tail)", LOG_TOKEN_TAIL),
        # Shadow mode keeps the sheet window a digest read (the input, as it is) and the
        # digest it meant to send (masked, as e-mail carries free text).
        Canary(
            "free-text answer",
            FREE_MARKER,
            (*FREE_TEXT_PLACES, *ARTIFACT_PLACES, *SHADOW_PLACES),
        ),
        Canary(
            "phone in a free-text answer", FREE_PHONE, (*FREE_TEXT_PLACES, *SHADOW_INPUT_PLACES)
        ),
        Canary(
            "e-mail in a free-text answer",
            FREE_EMAIL_LOCAL,
            (*FREE_TEXT_PLACES, *SHADOW_INPUT_PLACES),
        ),
    ]


def secret_canaries(sandbox: Sandbox) -> list[Canary]:
    """Every secret value of every block the runs load."""
    from moltbot.sandbox.jira import SANDBOX_JIRA_TOKEN
    from moltbot.sandbox.notion import SANDBOX_NOTION_TOKEN
    from moltbot.sandbox.sheets import sandbox_service_account_info

    account = sandbox_service_account_info(f"{sandbox.base_url}/sheets/token")
    key_lines = [
        line for line in account["private_key"].splitlines() if line and "-----" not in line
    ]
    return [
        Canary("slack webhook token", slack_url(sandbox).rsplit("/", 1)[-1]),
        Canary("smtp password", SMTP_PASSWORD),
        Canary("wrong smtp password", WRONG_SMTP_PASSWORD),
        Canary("notion token", SANDBOX_NOTION_TOKEN),
        Canary("wrong notion token", NOTION_WRONG_TOKEN),
        Canary("jira token", SANDBOX_JIRA_TOKEN),
        Canary("wrong jira token", JIRA_WRONG_TOKEN),
        Canary("service account private key", key_lines[1]),
        Canary("service account key id", account["private_key_id"]),
        Canary("database password (Secret block)", DB_PASSWORD),
        Canary("health check header (HttpHeaders block)", HEADER_SECRET),
        Canary("stripe signing secret", STRIPE_SIGNING_SECRET),
    ]


def slack_url(sandbox: Sandbox) -> str:
    return sandbox.slack_webhook_url(SLACK_NAME)


# --------------------------------------------------------------------------- the scan


@dataclass
class PlaceScan:
    """What was read of one place and what was found in it."""

    records: int = 0
    chars: int = 0
    allowed: int = 0
    leaks: list[str] = field(default_factory=list)


class Scanner:
    """Searches texts for every canary in every form, place by place."""

    def __init__(self, canaries: list[Canary]) -> None:
        self.canaries = canaries
        self.places: dict[str, PlaceScan] = defaultdict(PlaceScan)

    def scan(self, place: str, text: str, where: str = "") -> None:
        scan = self.places[place]
        scan.records += 1
        scan.chars += len(text)
        packed = re.sub(r"[\s\-.()]", "", text)
        for canary in self.canaries:
            hits = sum(text.count(form) for form in canary.forms)
            if not hits:
                hits = sum(packed.count(form) for form in canary.forms[1:])
            if not hits:
                continue
            if any(place.startswith(prefix) for prefix in canary.allowed):
                scan.allowed += hits
                continue
            at = text.find(canary.value)
            context = text[max(0, at - 80) : at + 80] if at >= 0 else text[:160]
            scan.leaks.append(f"{canary.name} in {place} {where}: …{context!r}…")

    def summary(self) -> str:
        """One line per place: records and characters read, canaries allowed and unexpected."""
        width = max(len(place) for place in self.places)
        lines = [f"{'place':<{width}}  records      chars  allowed  unexpected"]
        for place, scan in sorted(self.places.items()):
            counts = f"{scan.records:7d}  {scan.chars:9d}  {scan.allowed:7d}"
            lines.append(f"{place:<{width}}  {counts}  {len(scan.leaks):10d}")
        return "\n".join(lines)

    @property
    def leaks(self) -> list[str]:
        return [leak for scan in self.places.values() for leak in scan.leaks]


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a JSON-like value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)
    elif value is not None:
        yield str(value)


def as_text(value: Any) -> str:
    return "\n".join(strings(value))


# --------------------------------------------------------------------------- set-up


@pytest.fixture
def smtp_with_login() -> Iterator[SmtpSink]:
    """An SMTP sink that requires a login (the canary password), like a real relay."""
    with SmtpSink(username=SMTP_USER, password=SMTP_PASSWORD) as sink:
        yield sink


@pytest.fixture
def canary_blocks(
    sandbox: Sandbox, sandbox_blocks: list[str], smtp_with_login: SmtpSink, tmp_path: Path
) -> None:
    """Channel and credentials blocks holding canary secrets (good ones and wrong ones)."""
    from prefect.blocks.system import Secret

    from blocks import (
        EmailChannel,
        HttpHeaders,
        JiraCredentials,
        NotionCredentials,
        SlackIncomingWebhook,
    )
    from moltbot.sandbox.blocks import save_sandbox_blocks
    from moltbot.sandbox.jira import SANDBOX_JIRA_EMAIL

    # Earlier tests (the demo's, the sandbox command's) save the same block names pointing at
    # sandboxes of their own, stopped since: point them at this session's sandbox again.
    save_sandbox_blocks(sandbox)

    SlackIncomingWebhook(url=slack_url(sandbox)).save("canary-slack", overwrite=True)
    mail = {
        "smtp_host": smtp_with_login.host,
        "smtp_port": smtp_with_login.port,
        "tls": "none",
        "username": SMTP_USER,
        "sender": "moltbot@example.com",
        "recipients": ["ops@example.com"],
    }
    EmailChannel(**mail, password=SMTP_PASSWORD).save("canary-email", overwrite=True)
    EmailChannel(**mail, password=WRONG_SMTP_PASSWORD).save("canary-email-wrong", overwrite=True)
    NotionCredentials(token=NOTION_WRONG_TOKEN, base_url=f"{sandbox.base_url}/notion").save(
        "canary-notion-wrong", overwrite=True
    )
    JiraCredentials(
        server_url=f"{sandbox.base_url}/jira", email=SANDBOX_JIRA_EMAIL, api_token=JIRA_WRONG_TOKEN
    ).save("canary-jira-wrong", overwrite=True)
    Secret(value=f"postgresql://shop:{DB_PASSWORD}@127.0.0.1:9/sales").save(
        "canary-db", overwrite=True
    )
    HttpHeaders(headers={"X-Api-Key": HEADER_SECRET}).save("canary-headers", overwrite=True)
    shutil.copy(ROOT / "moltbot.toml", tmp_path / "moltbot.toml")


@pytest.fixture
def fresh_masking_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret registered yet: each one must be registered by the run that loads its block
    (this test process saved the blocks, and other tests may have registered them before)."""
    from moltbot import masking

    monkeypatch.setattr(masking, "_secrets", set())
    monkeypatch.setattr(masking, "_secrets_pattern", None)


# --------------------------------------------------------------------------- inputs


ORDERS_HEADER = "order_id,ordered_at,product,channel,region,quantity,unit_price,status,customer"
STOCK_HEADER = "sku,name,on_hand,reorder_point,lead_time_days,daily_demand,location"
DIGEST_HEADER = ["타임스탬프", "이름", "이메일 주소", "연락처", "참여 방식", "만족도", "의견"]
SUPPORT_HEADER = ["타임스탬프", "이름", "이메일", "연락처", "문의 유형", "긴급도", "제목", "내용"]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def orders_csv(directory: Path, encoding: str = "utf-8") -> Path:
    rows = [
        ORDERS_HEADER,
        f"A1,2026-11-23 01:00:00,무선 이어폰,web,Seoul,2,10000,completed,{CANARY_EMAIL}",
        f"A2,2026-11-23 03:00:00,녹차,app,Busan,3,5000,completed,{MOBILE}",
        f"A3,2026-11-22 02:00:00,텀블러,web,Seoul,1,12000,completed,{RRN}",
    ]
    return write(directory / f"orders-{encoding}.csv", "\n".join(rows) + "\n", encoding)


def stock_csv(directory: Path) -> Path:
    rows = [
        STOCK_HEADER,
        "SKU-1,무선 이어폰,0,10,3,2,서울 창고",
        "SKU-2,녹차,4,10,3,2,부산 창고",
        "SKU-3,텀블러,50,10,3,2,서울 창고",
    ]
    return write(directory / "stock.csv", "\n".join(rows) + "\n")


def digest_rows() -> list[list[str]]:
    answers = [
        ["2026. 11. 24 오전 9:05:12", "이민수", CANARY_EMAIL, MOBILE, "온라인", "5",
         f"{FREE_MARKER}. 연락은 {FREE_PHONE} 또는 {FREE_EMAIL_LOCAL}@example.com 으로"],
        ["2026. 11. 24 오전 9:40:02", "박지호", "park@example.com", LANDLINE, "오프라인", "4",
         "좋았어요!"],
        ["2026. 11. 24 오전 10:12:45", "최수아", "choi@example.com", MOBILE_PACKED, "온라인", "3",
         "실습 시간이 더 길었으면 합니다."],
    ]  # fmt: skip
    return [DIGEST_HEADER, *answers]


def support_rows() -> list[list[str]]:
    content = (
        f"결제가 두 번 됐어요. 카드 {CARD_GROUPED}, 주민번호 {RRN}, "
        f"환불 계좌 신한은행 {ACCOUNT}, 연락처 {MOBILE}입니다"
    )
    answers = [
        ["2026. 11. 24 오후 3:00:00", "이민수", CANARY_EMAIL, MOBILE, "결제 문의", "긴급",
         f"이중 결제 {MOBILE_PACKED}", content],
        ["2026. 11. 24 오후 3:05:00", "박지호", "park@example.com", LANDLINE_BRACKETED, "버그 신고",
         "보통", "앱이 멈춰요", f"회신은 {CANARY_EMAIL}로 부탁드립니다"],
    ]  # fmt: skip
    return [SUPPORT_HEADER, *answers]


def payment_event(n: int) -> dict[str, Any]:
    return {
        "id": f"pay-canary-{RUN}-{n}",
        "type": "payment.failed",
        "occurred_at": "2026-11-24T09:12:45+09:00",
        "payload": {
            "order_id": f"A-{n}",
            "amount": 59000,
            "provider": "toss",
            "error_code": f"CARD_DECLINED card {CARD} rrn {RRN}",
            "severity": "high",
            "customer_email": CANARY_EMAIL,
            "customer_phone": MOBILE,
            "refund_account": f"계좌 {ACCOUNT}",
        },
    }


def events_file(
    directory: Path, name: str, numbers: Iterable[int], encoding: str = "utf-8"
) -> Path:
    lines = [json.dumps(payment_event(n), ensure_ascii=False) for n in numbers]
    return write(directory / name, "\n".join(lines) + "\n", encoding)


def error_log_lines(at: datetime) -> tuple[str, str]:
    """A JSON-lines log and a plain one whose error messages carry canaries (and fields the
    flow never reads that carry more), with info lines between them."""
    stamp = at.isoformat()
    messages = [
        f"payment failed for {CANARY_EMAIL} ({MOBILE}), card {CARD_GROUPED}",
        f"refund to 환불 계좌 신한은행 {ACCOUNT} failed: 주민번호 {RRN}, 연락처 {MOBILE_PACKED}",
        f"card {CARD} declined for {EMAIL_LOCAL}@example.com, token={LOG_TOKEN}",
        f"webhook refused: Authorization: Bearer {LOG_TOKEN}",
        f"callback to {LANDLINE} and {LANDLINE_BRACKETED} timed out after 1500 ms",
    ]
    records = []
    for message in messages:
        records.append({"timestamp": stamp, "level": "INFO", "message": f"retrying {CANARY_EMAIL}"})
        records.append(
            {"timestamp": stamp, "level": "ERROR", "message": message,
             "user": {"email": CANARY_EMAIL, "phone": MOBILE, "rrn": RRN}, "card": CARD}
        )  # fmt: skip
    json_lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    plain = [f"{at:%Y-%m-%d %H:%M:%S} ERROR [batch] {message}" for message in messages[1:]]
    plain.insert(1, f"{at:%Y-%m-%d %H:%M:%S} INFO [batch] sent to {CANARY_EMAIL}")
    return json_lines, "\n".join(plain) + "\n"


def stripe_failures(base: datetime) -> list[dict[str, Any]]:
    """Three failed payment intents of one customer (canaries in the customer's e-mail, id,
    billing details, metadata and the error message), the `charge.failed` of the first (the
    same attempt), and a generic failure whose reason code carries a card and an RRN."""
    details = {"email": CANARY_EMAIL, "name": "이민수", "phone": MOBILE,
               "address": {"line1": f"계좌 {ACCOUNT}"}}  # fmt: skip
    events: list[dict[str, Any]] = []
    for n in (1, 2, 3):
        error = {
            "charge": f"ch_canary_{RUN}_{n}", "code": "card_declined",
            "decline_code": "insufficient_funds", "type": "card_error",
            "message": f"Card {CARD_GROUPED} of {CANARY_EMAIL} was declined",
            "payment_method": {"id": f"pm_canary_{n}", "billing_details": details},
        }  # fmt: skip
        intent = {
            "id": f"pi_canary_{RUN}_{n}", "object": "payment_intent", "amount": 45000,
            "currency": "krw", "customer": CUSTOMER_ID, "receipt_email": CANARY_EMAIL,
            "latest_charge": f"ch_canary_{RUN}_{n}", "last_payment_error": error,
            "metadata": {"rrn": RRN, "phone": MOBILE_PACKED, "landline": LANDLINE_BRACKETED},
            "status": "requires_payment_method",
        }  # fmt: skip
        at = base + timedelta(seconds=30 * n)
        kind = "payment_intent.payment_failed"
        events.append(stripe_event(f"pi_failed_{n}", kind, at, {"object": intent}))
    charge = {
        "id": f"ch_canary_{RUN}_1", "object": "charge", "amount": 45000, "currency": "krw",
        "customer": CUSTOMER_ID, "payment_intent": f"pi_canary_{RUN}_1",
        "failure_code": "card_declined", "failure_message": f"card {CARD} declined",
        "billing_details": {**details, "phone": LANDLINE}, "status": "failed",
    }  # fmt: skip
    at = base + timedelta(seconds=40)
    events.append(stripe_event("ch_failed_1", "charge.failed", at, {"object": charge}))
    at, generic = base + timedelta(seconds=50), payment_event(6)["payload"]
    events.append(stripe_event("generic_6", "payment.failed", at, generic))
    return events


def stripe_event(name: str, kind: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_canary_{RUN}_{name}", "object": "event", "type": kind,
        "created": int(at.timestamp()), "data": data,
    }  # fmt: skip


# --------------------------------------------------------------------------- running


@dataclass
class Outputs:
    """What the runs printed, and how each ended."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    exits: list[tuple[int, str]] = field(default_factory=list)


def arguments(name: str, params: dict[str, Any]) -> list[str]:
    args = ["run", name]
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        args += ["--param", f"{key}={text}"]
    return args


def cli(outputs: Outputs, name: str, params: dict[str, Any], *extra: str) -> Any:
    """`moltbot run NAME --param k=v …` in this process, as a user runs it."""
    result = CliRunner().invoke(app, [*arguments(name, params), *extra])
    outputs.stdout.append(result.stdout)
    outputs.stderr.append(result.stderr)
    outputs.exits.append((result.exit_code, name))
    return result


def subprocess_cli(outputs: Outputs, name: str, params: dict[str, Any], api: str) -> int:
    """The same in a process of its own (nothing registered, nothing configured before)."""
    environment = os.environ | {"PREFECT_API_URL": api, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "moltbot.cli", *arguments(name, params)],
        capture_output=True, text=True, env=environment, check=False,
    )  # fmt: skip
    outputs.stdout.append(done.stdout)
    outputs.stderr.append(done.stderr)
    outputs.exits.append((done.returncode, f"{name} (a process of its own)"))
    return done.returncode


def the_one_line(result: Any) -> str:
    """The bad-input message: exit 2 and a single line on stderr."""
    assert result.exit_code == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


def run_daily_report(outputs: Outputs, sandbox: Sandbox, folder: Path) -> None:
    """Delivered; Slack 5xx until dead; a refused SMTP login (535); two kinds of bad input."""
    orders = str(orders_csv(folder))
    channels = ["canary-slack", "canary-email", "outbox"]
    day = {"source": orders, "report_date": "2026-11-23", "channels": channels}
    assert cli(outputs, "daily-report", day, "--verbose").exit_code == 0
    # An error body that echoes what it was sent: the webhook's token, a customer's number.
    token = slack_url(sandbox).rsplit("/", 1)[-1]
    sandbox.state.slack.inject_fault(503, count=50, body=f"upstream failed for {token} ({MOBILE})")
    day = {"source": orders, "report_date": "2026-11-22", "channels": ["canary-slack"]}
    assert cli(outputs, "daily-report", day).exit_code == 1
    sandbox.state.slack.core.clear_faults()
    day = {"source": orders, "report_date": "2026-11-21", "channels": ["canary-email-wrong"]}
    assert cli(outputs, "daily-report", day).exit_code == 1
    cp949 = cli(outputs, "daily-report", {"source": str(orders_csv(folder, "cp949"))})
    assert re.search(r"orders-cp949\.csv: .*not valid utf-8 at byte \d+", the_one_line(cp949))
    database = cli(outputs, "daily-report", {"source": "secret:canary-db", "query": "SELECT 1"})
    assert "postgresql://shop:***@127.0.0.1:9/sales" in the_one_line(database)


def run_inventory_alert(outputs: Outputs, sandbox: Sandbox, folder: Path) -> None:
    """Alerts by severity; then one more item out, and the webhook is gone (404)."""
    stock = stock_csv(folder)
    routes = {"out": ["canary-slack"], "low": ["canary-email", "outbox"]}
    params = {"source": str(stock), "channels_by_severity": routes}
    assert cli(outputs, "inventory-alert", params).exit_code == 0
    sandbox.state.slack.unregister_webhook(slack_url(sandbox))
    write(stock, stock.read_text(encoding="utf-8").replace("SKU-3,텀블러,50", "SKU-3,텀블러,0"))
    assert cli(outputs, "inventory-alert", params).exit_code == 1
    slack_url(sandbox)  # registered again for the runs after this one


def run_form_digest(outputs: Outputs, sandbox: Sandbox) -> None:
    """Notion refuses a wrong token (401), then a page (400, echoing the request); then done."""
    from moltbot.sandbox.notion import SANDBOX_DIGEST_DATABASE_ID, SANDBOX_NOTION_TOKEN

    notion = sandbox.state.notion
    spreadsheet = sandbox.state.sheets.create_spreadsheet("만족도 설문", {"응답": digest_rows()})
    digest = {
        "sheets_block": "sandbox-sheets", "spreadsheet_id": spreadsheet, "worksheet": "응답",
        "channels": ["canary-slack", "canary-email", "outbox"],
        "skip_columns": ["이름", "이메일 주소", "연락처"],
        "notion_block": "canary-notion-wrong", "notion_database_id": SANDBOX_DIGEST_DATABASE_ID,
    }  # fmt: skip
    assert cli(outputs, "form-digest", digest).exit_code == 1
    digest["notion_block"] = "sandbox-notion"
    echo = f"body.properties invalid: {CANARY_EMAIL} (token {SANDBOX_NOTION_TOKEN})"
    notion.core.inject_fault(400, count=None, method="POST", path=r"^/v1/pages$", message=echo)
    assert cli(outputs, "form-digest", digest).exit_code == 1
    notion.core.clear_faults()
    done = cli(outputs, "form-digest", digest)
    assert done.exit_code == 0, done.stderr


def run_ticket_creation(outputs: Outputs, sandbox: Sandbox, folder: Path) -> None:
    """Form answers; an events file; one not UTF-8; Jira 401, 400 (echoing), 503."""
    from moltbot.sandbox.jira import SANDBOX_JIRA_TOKEN

    jira = sandbox.state.jira
    support = sandbox.state.sheets.create_spreadsheet("고객 문의", {"응답": support_rows()})
    answers = {
        "sheets_block": "sandbox-sheets", "spreadsheet_id": support, "worksheet": "응답",
        "jira_block": "sandbox-jira", "channels": ["canary-slack"],
    }  # fmt: skip
    assert cli(outputs, "ticket-creation", answers).exit_code == 0
    events = {"events_file": str(events_file(folder, "events.jsonl", (1, 2)))}
    assert cli(outputs, "ticket-creation", {**events, "jira_block": "sandbox-jira"}).exit_code == 0
    cp949 = {"events_file": str(events_file(folder, "events-cp949.jsonl", (1, 2), "cp949"))}
    refused = cli(outputs, "ticket-creation", {**cp949, "jira_block": "sandbox-jira"})
    assert re.search(r"events-cp949\.jsonl: not valid utf-8 at byte \d+", the_one_line(refused))
    third = {"events_file": str(events_file(folder, "events-3.jsonl", (3,)))}
    assert (
        cli(outputs, "ticket-creation", {**third, "jira_block": "canary-jira-wrong"}).exit_code == 1
    )
    echo = f"customer {CANARY_EMAIL} {RRN} is invalid (token {SANDBOX_JIRA_TOKEN})"
    jira.core.inject_fault(400, count=None, path="issue/bulk$", message=echo)
    assert cli(outputs, "ticket-creation", {**third, "jira_block": "sandbox-jira"}).exit_code == 1
    jira.core.clear_faults()
    jira.core.inject_fault(503, count=None, path="issue/bulk$")
    assert cli(outputs, "ticket-creation", {**third, "jira_block": "sandbox-jira"}).exit_code == 1
    jira.core.clear_faults()


def run_webhook_route(outputs: Outputs, api: str) -> str:
    """Events in the webhook inbox, runs given their ids: one in a process started as `serve`
    and workers start flow runs (failing: a wrong Jira token), one through the CLI in a process
    of its own. Returns the inbox id of the first."""
    from flows.ticket_creation.flow import ticket_creation
    from moltbot.state.inbox import Inbox
    from moltbot.state.ledger import Ledger

    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        first, _ = inbox.accept("canary", payment_event(4), received_at=datetime.now(UTC))
        second, _ = inbox.accept("canary", payment_event(5), received_at=datetime.now(UTC))
    run_in_engine_process(
        ticket_creation, {"inbox_ids": [first.id], "jira_block": "canary-jira-wrong"}
    )
    params = {"inbox_ids": [second.id], "jira_block": "sandbox-jira", "channels": ["canary-slack"]}
    assert subprocess_cli(outputs, "ticket-creation", params, api) == 0
    return first.id


def run_in_engine_process(flow: Any, parameters: dict[str, Any]) -> None:
    """Run `flow` as `serve` does: Prefect's runner spawns a process that imports and runs it
    (a worker's `python -m prefect.engine` imports it the same way)."""
    from prefect.flow_engine import run_flow_in_subprocess

    process = run_flow_in_subprocess(flow, parameters=parameters)
    process.join()


def run_error_spike(outputs: Outputs, folder: Path) -> None:
    """A JSON-lines log and a plain one, both spiking: one alert each, samples masked."""
    logs = folder / "app-logs"
    logs.mkdir()
    json_lines, plain = error_log_lines(datetime.now(UTC))
    write(logs / "checkout.log", json_lines)
    write(logs / "batch.log", plain)
    pattern = r"^(?P<timestamp>\S+ \S+) (?P<level>[A-Z]+) \[\w+\] (?P<message>.*)$"
    sources = {
        "checkout": {"paths": str(logs / "checkout.log*")},
        "batch": {"paths": [str(logs / "batch.log")], "format": "regex", "pattern": pattern,
                  "timezone": "UTC"},
    }  # fmt: skip
    channels = ["canary-slack", "canary-email", "outbox"]
    params = {"sources": sources, "min_count": 3, "channels": channels}
    done = cli(outputs, "error-spike", params, "--json")
    assert done.exit_code == 0, done.stderr
    transitions = json.loads(done.stdout)["transitions"]
    assert sorted((t["source"], t["severity"]) for t in transitions) == [
        ("batch", "spike"),
        ("checkout", "spike"),
    ]
    # Every error message carried a canary: every sample shown was masked.
    samples = [item["sample"] for t in transitions for item in t["signatures"]]
    assert len(samples) == 9 and all("***" in sample for sample in samples), samples


async def post_signed(app: Any, events: list[dict[str, Any]], clock: int) -> list[str]:
    """Post each event to the gateway app signed as Stripe signs it; their inbox ids. The first
    once more, under a new id and signed with another secret, is refused (401)."""
    import httpx

    from moltbot.webhooks.signatures import sign_stripe

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

        async def post(event: dict[str, Any], secret: str) -> httpx.Response:
            body = json.dumps(event, ensure_ascii=False).encode()
            headers = {"Stripe-Signature": sign_stripe(body, secret, clock)}
            return await client.post("/hooks/stripe", content=body, headers=headers)

        ids = []
        for event in events:
            answer = await post(event, STRIPE_SIGNING_SECRET)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        forged = await post(events[0] | {"id": f"evt_forged_{RUN}"}, "whsec_forged")
        assert forged.status_code == 401, forged.text
    return ids


def run_payment_failures(outputs: Outputs, sandbox: Sandbox) -> None:
    """Signed Stripe events through the gateway into the inbox; a webhook run records them and
    opens the repeated customer's ticket (ticket-creation as a subflow, on the sandbox Jira);
    a scheduled run just after midnight alerts their window and sends their day's summary."""
    from pydantic import SecretStr

    from moltbot.state.inbox import Inbox
    from moltbot.state.ledger import Ledger
    from moltbot.webhooks.app import SourceVerifier, create_gateway_app
    from moltbot.webhooks.config import GatewayConfig

    received = int(time.time())
    today = datetime.now(SEOUL).replace(hour=0, minute=0, second=0, microsecond=0)
    failed_at = (today - timedelta(hours=14)).astimezone(UTC)  # yesterday 10:00 in Seoul
    verifier = SourceVerifier(scheme="stripe", secret=SecretStr(STRIPE_SIGNING_SECRET))
    with Ledger.from_settings() as ledger:
        gateway = create_gateway_app(
            GatewayConfig.from_project(), Inbox(ledger), {"stripe": verifier},
            clock=lambda: float(received),
        )  # fmt: skip
        ids = asyncio.run(post_signed(gateway, stripe_failures(failed_at), received))
        assert Inbox(ledger).find("stripe", f"evt_forged_{RUN}") is None
    channels = {"alert": ["canary-slack", "canary-email"], "summary": ["outbox"]}
    common = {"jira_block": "sandbox-jira", "channels_by_severity": channels}
    webhook = {**common, "inbox_ids": ids, "now": (failed_at + timedelta(minutes=3)).isoformat()}
    done = cli(outputs, "payment-failures", webhook, "--json")
    assert done.exit_code == 0, done.stderr
    [ticket] = json.loads(done.stdout)["tickets"]
    assert (ticket["status"], ticket["failures"]) == ("created", 3)
    [issue] = [issue for issue in sandbox.state.jira.issues("OPS") if issue.key == ticket["issue"]]
    assert issue.summary.startswith("반복 결제 실패: 고객 ***@example.com #"), issue.summary
    scheduled = {**common, "now": (today + timedelta(minutes=1)).isoformat()}
    done = cli(outputs, "payment-failures", scheduled, "--json")
    assert done.exit_code == 0, done.stderr
    result = json.loads(done.stdout)
    assert [alert["failures"] for alert in result["alerts"]] == [4]
    assert [summary["failures"] for summary in result["summaries"]] == [4]


def run_service_health(outputs: Outputs, sandbox: Sandbox) -> None:
    """Two services sent the secret header: one answers with a page echoing it and a customer's
    e-mail, the other is down (503, echoing the same) for three checks, so it goes DOWN."""
    targets = sandbox.state.targets
    echo = f"{CANARY_EMAIL} X-Api-Key={HEADER_SECRET}"
    # A request without the header whole is answered 401: a 200 or 503 says it arrived.
    wanted = {"X-Api-Key": HEADER_SECRET}
    targets.set("canary-api", "up", body=f"OK {echo}", required_headers=wanted)
    targets.set("canary-web", "down", body=f"down: {echo}", required_headers=wanted)
    services = {
        name: {"url": f"{sandbox.base_url}/targets/{name}", "headers_block": "canary-headers",
               "contains": "OK"}
        for name in ("canary-api", "canary-web")
    }  # fmt: skip
    channels = {"down": ["canary-slack", "canary-email", "outbox"]}
    params = {"services": services, "channels_by_severity": channels}
    transitions = []
    for _ in range(3):
        done = cli(outputs, "service-health", params, "--json")
        assert done.exit_code == 0, done.stderr
        transitions.append(json.loads(done.stdout)["transitions"])
    assert [[(t["service"], t["severity"]) for t in run] for run in transitions] == [
        [], [], [("canary-web", "down")]
    ]  # fmt: skip
    assert [r.status for r in targets.requests_to("canary-api")] == [200] * 3
    assert [r.status for r in targets.requests_to("canary-web")] == [503] * 3


def run_reconcile(outputs: Outputs) -> dict[str, Any]:
    """Last: everything the other runs recorded, compared with what should have been; its
    result (omissions are ids, keys and hashes)."""
    done = cli(outputs, "reconcile", {"channels": ["canary-slack", "outbox"]}, "--json")
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- reading back


def read_prefect(scanner: Scanner, since: datetime) -> list[Any]:
    """Logs, flow runs (parameters, state messages), task runs, artifacts and events; returns
    the flow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterId,
        LogFilter,
        LogFilterTimestamp,
    )
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
            )
        )
        run_ids = [run.id for run in runs]
        for run in runs:
            scanner.scan("flow-run parameters", as_text(run.parameters), str(run.name))
            state = run.state
            scanner.scan(
                "flow-run states",
                f"{run.name}\n{state.name if state else ''}\n{state.message if state else ''}",
                str(run.name),
            )
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
        )
        for task_run in task_runs:
            state = task_run.state
            scanner.scan("task-run states", f"{task_run.name}\n{state.message if state else ''}")
        offset = 0
        while page := client.read_logs(
            log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)),
            limit=200,
            offset=offset,
        ):
            for log in page:
                scanner.scan("prefect logs (API)", log.message, log.name)
            offset += len(page)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )
        for artifact in artifacts:
            scanner.scan(
                "artifacts", f"{artifact.description}\n{as_text(artifact.data)}", str(artifact.key)
            )
        events = stored_events(client, since, run_ids)
        for event in events:
            # An artifact's events carry its content: they may hold what the artifact holds.
            place = "events (artifact)" if event.event.startswith("prefect.artifact") else "events"
            scanner.scan(place, event.model_dump_json(), event.event)
    return runs


TERMINAL = ("Completed", "Failed", "Crashed", "Cancelled")


def stored_events(client: Any, since: datetime, run_ids: list[Any]) -> list[Any]:
    """Every event since `since`, once the server has stored each run's final state event
    (it stores events in batches, shortly after they happen)."""
    from prefect.events.filters import EventFilter, EventOccurredFilter

    wanted = {f"prefect.flow-run.{run_id}" for run_id in run_ids}
    # The shared hang guard bounds a server that never stores them; no tuned wait.
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        query = EventFilter(occurred=EventOccurredFilter(since=since))
        page = client.read_events(filter=query, limit=50)
        events = list(page.events)
        while page.next_page:
            page = client.read_events_page(page.next_page)
            events.extend(page.events)
        finished = {event.resource.id for event in events if event.event.endswith(TERMINAL)}
        if wanted <= finished or time.monotonic() > deadline:
            assert wanted <= finished, f"final state events never stored: {wanted - finished}"
            return events
        time.sleep(0.2)


def read_ledger(scanner: Scanner, home: Path) -> None:
    """Every text value of every table of the ledger database (the audit trail included)."""
    engine = sqlalchemy.create_engine(f"sqlite:///{home / 'ledger.sqlite3'}")
    try:
        inspector = sqlalchemy.inspect(engine)
        with engine.connect() as connection:
            for table in inspector.get_table_names():
                quoted = connection.dialect.identifier_preparer.quote(table)
                result = connection.execute(sqlalchemy.text(f"SELECT * FROM {quoted}"))
                columns = list(result.keys())
                for row in result:
                    for column, value in zip(columns, row, strict=True):
                        if isinstance(value, bytes):
                            value = value.decode("utf-8", "replace")
                        if isinstance(value, str):
                            scanner.scan(f"ledger:{table}.{column}", value)
                scanner.places[f"ledger:{table} (tables read)"].records += 1
    finally:
        engine.dispose()


def results_written_since(since: datetime) -> list[Path]:
    """Files Prefect persisted as results (task and flow return values) during the runs."""
    from prefect.settings import get_current_settings

    folder = get_current_settings().results.local_storage_path
    return [
        path
        for path in folder.glob("**/*")
        if path.is_file() and path.stat().st_mtime >= since.timestamp()
    ]


def read_files(scanner: Scanner, place: str, paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_file():
            scanner.scan(place, path.read_bytes().decode("utf-8", "replace"), path.name)


def read_sandbox(scanner: Scanner, sandbox: Sandbox, sinks: Iterable[SmtpSink]) -> None:
    """What each emulator stored: Slack posts, mails, Notion pages and blocks, Jira issues."""
    for post in sandbox.state.slack.posts:
        scanner.scan("slack", as_text(post.payload), post.path.rsplit("/", 2)[0])
    for sink in sinks:
        for mail in sink.messages:
            parts = [f"{name}: {value}" for name, value in mail.message.items()]
            for part in mail.message.walk():
                if part.get_content_maintype() == "text":
                    parts.append(part.get_content())
            scanner.scan("smtp", "\n".join(parts), mail.subject)
    notion = sandbox.state.notion
    for page in notion.pages(include_trashed=True):
        scanner.scan("notion", as_text(page) + "\n" + as_text(notion.children(page["id"])))
    for issue in sandbox.state.jira.issues():
        comments = [comment.body for comment in issue.comments]
        text = as_text([issue.summary, issue.description, issue.labels, comments])
        scanner.scan("jira", f"{text}\n{as_text(issue.properties)}", issue.key)
    for request in sandbox.state.targets.requests:
        scanner.scan("targets", as_text(request.to_dict()), request.target)


# --------------------------------------------------------------------------- the test


def test_no_canary_reaches_a_place_no_route_sends_it(
    sandbox: Sandbox,
    canary_blocks: None,
    smtp_with_login: SmtpSink,
    prefect_api: str,
    moltbot_home: Path,
    tmp_path: Path,
    fresh_masking_registry: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # No margin before now: this worker's previous test may have started a run a moment ago,
    # and every run, log and artifact of this test is stamped after this moment (one clock).
    since = datetime.now(UTC)
    outputs = Outputs()

    run_daily_report(outputs, sandbox, tmp_path)
    run_inventory_alert(outputs, sandbox, tmp_path)
    run_form_digest(outputs, sandbox)
    run_ticket_creation(outputs, sandbox, tmp_path)
    engine_inbox_id = run_webhook_route(outputs, prefect_api)
    run_error_spike(outputs, tmp_path)
    run_payment_failures(outputs, sandbox)
    run_service_health(outputs, sandbox)
    reconciled = run_reconcile(outputs)

    captured = capfd.readouterr()  # Prefect's console, and the spawned process's output
    scanner = Scanner([*personal_canaries(), *secret_canaries(sandbox)])
    for text in [*outputs.stdout, captured.out]:
        scanner.scan("stdout", text)
    for text in [*outputs.stderr, captured.err]:
        scanner.scan("stderr", text)
    read_files(scanner, "log files", (moltbot_home / "logs").glob("**/*"))
    read_files(scanner, "outbox", (moltbot_home / "outbox").glob("**/*"))
    runs = read_prefect(scanner, since)
    read_files(scanner, "prefect result storage", results_written_since(since))
    read_ledger(scanner, moltbot_home)
    read_sandbox(scanner, sandbox, [sandbox.smtp, smtp_with_login])
    print("\n" + scanner.summary())
    print("exit codes:", *(f"{code} {name}" for code, name in outputs.exits), sep="\n  ")

    assert scanner.leaks == [], "\n".join(scanner.leaks)
    # Every run counted: 24 through the CLI, one started as `serve` starts runs, and the
    # ticket-creation subflow of payment-failures.
    assert len(runs) == len(outputs.exits) + 2
    [engine_run] = [run for run in runs if run.parameters.get("inbox_ids") == [engine_inbox_id]]
    assert engine_run.state is not None and engine_run.state.is_failed()
    # The scan finds what it looks for: free text went where routes send it, events stay in
    # the inbox, and the daily report's orders (with a customer column) never left the CSV.
    for place in ("smtp", "notion", "outbox", "artifacts", "ledger:webhook_inbox.event"):
        assert scanner.places[place].allowed > 0, place
    # The monitoring automations stored what they read, masked or hashed: error signatures and
    # samples, payment events (customer hash and label), service states; the targets' log.
    for place in (
        "ledger:error_signatures.sample",
        "ledger:payment_events.customer_label",
        "ledger:payment_events.customer_key",
        "ledger:service_health.state",
        "targets",
    ):
        assert scanner.places[place].records > 0, place
    # Reconcile found every one of their effects recorded.
    for name in ("error-spike", "payment-failures", "service-health"):
        rate = reconciled["omission_rate"][name]
        assert (rate["expected"] > 0, rate["omissions"]) == (True, 0), name
