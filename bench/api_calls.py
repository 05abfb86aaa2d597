"""API calls per item against the published limits, counted by the sandbox emulators' request logs.

Run by `python -m bench` as a worker process against the benchmark's Prefect server, in a
scratch folder holding the repository's moltbot.toml (the shipped ticket mappings):

    python -m bench.api_calls OUT.json --tickets 120

- ticket-creation: `--tickets` new form answers in a Sheets emulator become Jira issues; the
  Jira emulator's log gives the requests and the 429s answered. Every request the run sent
  counts, the jira client's own included, against ⌈n/50⌉ + 2: the bulk creates, the JQL
  search for existing dedup labels, and one spare (the client is built once per run and reads
  neither serverInfo nor, with every field named by id, the field list).
- form-digest: the sample form (30 responses, a Notion digest page): Sheets reads (target ≤ 2)
  and Notion requests for the page of b blocks (target 1 + ⌈(b − 100)/100⌉).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.measure import REPO, Figure, bench_env, fresh_folder

FORM_HEADER = ["타임스탬프", "이름", "이메일", "연락처", "문의 유형", "긴급도", "제목", "내용"]
CATEGORIES = ["결제 문의", "버그 신고", "일반 문의"]
URGENCY = ["매우 긴급", "긴급", "보통", "낮음"]
FORM_TAB = "설문지 응답 시트1"


def _form_answers(count: int) -> list[list[str]]:
    """`count` support-form answers the shipped mappings turn into one issue each."""
    rows: list[list[str]] = [FORM_HEADER]
    for n in range(count):
        minute, second = divmod(n, 60)
        rows.append(
            [
                f"2026. 11. 24 오후 3:{minute % 60:02d}:{second:02d}",
                f"고객{n}",
                f"customer{n}@example.com",
                f"010-1234-{n:04d}",
                CATEGORIES[n % 3],
                URGENCY[n % 4],
                f"주문 {n} 문의",
                f"주문 {n}번 관련 문의입니다.",
            ]
        )
    return rows


def _ticket_creation(sandbox: Any, tickets: int) -> dict[str, Any]:
    from flows.ticket_creation.flow import ticket_creation

    sheet = sandbox.state.sheets.create_spreadsheet(
        "고객 문의 (응답)", {FORM_TAB: _form_answers(tickets)}
    )
    jira = sandbox.state.jira.core
    jira.clear_requests()
    result = ticket_creation(
        sheets_block="sandbox-sheets",
        spreadsheet_id=sheet,
        worksheet=FORM_TAB,
        jira_block="sandbox-jira",
        channels=["outbox"],
    )
    return {
        "created": len(result["created"]),
        "failed": len(result["failed"]),
        "jira_requests": len(jira.requests),
        "jira_by_path": _by_path(jira.requests),
        "jira_429": sum(1 for r in jira.requests if r.status == 429),
    }


def _form_digest(sandbox: Any) -> dict[str, Any]:
    from demo.sample_forms import (
        NPS_COLUMN,
        PERSONAL_COLUMNS,
        REQUIRED_COLUMNS,
        SAMPLE_FORM_NAME,
        SAMPLE_FORM_WORKSHEET,
        sample_form_sheet,
    )
    from flows.form_digest.flow import form_digest
    from moltbot.sandbox.notion import SANDBOX_DIGEST_DATA_SOURCE_ID, SANDBOX_DIGEST_DATABASE_ID

    sheet = sandbox.state.sheets.create_spreadsheet(
        SAMPLE_FORM_NAME, {SAMPLE_FORM_WORKSHEET: sample_form_sheet(2)}
    )
    sheets, notion = sandbox.state.sheets.core, sandbox.state.notion.core
    sheets.clear_requests()
    notion.clear_requests()
    form_digest(
        sheets_block="sandbox-sheets",
        spreadsheet_id=sheet,
        worksheet=SAMPLE_FORM_WORKSHEET,
        form_name=SAMPLE_FORM_NAME,
        channels=["outbox"],
        notion_block="sandbox-notion",
        notion_database_id=SANDBOX_DIGEST_DATABASE_ID,
        required_columns=list(REQUIRED_COLUMNS),
        nps_column=NPS_COLUMN,
        skip_columns=list(PERSONAL_COLUMNS),
    )
    reads = [r for r in sheets.requests if r.method == "GET"]
    page_writes = [
        r
        for r in notion.requests
        if (r.method, r.path) == ("POST", "/v1/pages") or r.path.endswith("/children")
    ]
    pages = sandbox.state.notion.pages(SANDBOX_DIGEST_DATA_SOURCE_ID)
    blocks = len(sandbox.state.notion.children(pages[-1]["id"])) if pages else 0
    return {
        "sheets_reads": len(reads),
        "sheets_by_path": _by_path(sheets.requests),
        "notion_page_requests": len(page_writes),
        "notion_blocks": blocks,
        "notion_by_path": _by_path(notion.requests),
        "sheets_429": sum(1 for r in sheets.requests if r.status == 429),
        "notion_429": sum(1 for r in notion.requests if r.status == 429),
    }


def _by_path(requests: list[Any]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for request in requests:
        key = f"{request.method} {request.path}"
        seen[key] = seen.get(key, 0) + 1
    return seen


def worker() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tickets", type=int, default=120)
    options = parser.parse_args()
    from moltbot.sandbox import Sandbox
    from moltbot.sandbox.blocks import save_sandbox_blocks

    with Sandbox() as sandbox:
        save_sandbox_blocks(sandbox)
        taken = {
            "ticket_creation": _ticket_creation(sandbox, options.tickets),
            "form_digest": _form_digest(sandbox),
        }
    options.out.write_text(json.dumps(taken, indent=1, ensure_ascii=False), encoding="utf-8")


def measure(api_url: str, *, tickets: int) -> list[Figure]:
    """Run the worker once (the counts do not vary from run to run) and turn them into figures."""
    folder = fresh_folder("api-calls")
    (folder / "moltbot.toml").write_bytes((REPO / "moltbot.toml").read_bytes())
    out = folder / "calls.json"
    env = bench_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        MOLTBOT_HOME=str(folder / "home"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    with (folder / "run.log").open("ab") as log:
        subprocess.run(
            [sys.executable, "-m", "bench.api_calls", str(out), "--tickets", str(tickets)],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    taken = json.loads(out.read_text(encoding="utf-8"))
    jira, digest = taken["ticket_creation"], taken["form_digest"]
    jira_limit = math.ceil(tickets / 50) + 2
    blocks = digest["notion_blocks"]
    notion_limit = 1 + math.ceil(max(blocks - 100, 0) / 100)
    throttled = jira["jira_429"] + digest["sheets_429"] + digest["notion_429"]
    return [
        Figure(
            "API calls",
            f"Jira requests for {tickets} new tickets (ticket-creation)",
            f"{jira['jira_requests']} ({jira['created']} created, {jira['failed']} failed)",
            f"≤ ⌈n/50⌉ + 2 = {jira_limit}",
            jira["jira_requests"] <= jira_limit and jira["created"] == tickets,
            ratio=jira["jira_requests"] / jira_limit,
            target_ratio=1,
            note="every Jira request of the run counts (the bulk creates, the dedup search and "
            "any serverInfo/field read of the jira client): "
            + "; ".join(f"{path} {count}" for path, count in jira["jira_by_path"].items()),
        ),
        Figure(
            "API calls",
            "Sheets reads per form-digest",
            str(digest["sheets_reads"]),
            "≤ 2",
            digest["sheets_reads"] <= 2,
            ratio=digest["sheets_reads"] / 2,
            target_ratio=1,
            note="; ".join(f"{path} {count}" for path, count in digest["sheets_by_path"].items()),
        ),
        Figure(
            "API calls",
            f"Notion requests writing a digest page of {blocks} top-level blocks",
            str(digest["notion_page_requests"]),
            f"≤ 1 + ⌈(b − 100)/100⌉ = {notion_limit}",
            digest["notion_page_requests"] <= notion_limit,
            ratio=digest["notion_page_requests"] / notion_limit,
            target_ratio=1,
            note="page writes (POST /v1/pages, PATCH …/children); all: "
            + "; ".join(f"{path} {count}" for path, count in digest["notion_by_path"].items()),
        ),
        Figure(
            "API calls",
            "429 answers from Jira, Sheets and Notion emulators",
            str(throttled),
            "0",
            throttled == 0,
            note="the emulators model the published rate limits",
        ),
    ]


if __name__ == "__main__":
    worker()
