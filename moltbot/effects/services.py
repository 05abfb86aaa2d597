"""Executors of effects on services: Jira issues and comments, Notion pages, Sheets appends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from blocks.jira import JiraCredentials
from blocks.notion import NotionCredentials
from blocks.sheets import GoogleSheetsCredentials
from moltbot.effects.executors import apply_each
from moltbot.effects.model import Applied, Intent, Preview
from moltbot.effects.preview import first_lines, jira_issue_lines, make_preview, notion_outline
from moltbot.errors import InputRefused, ServiceError


class ServiceExecutor:
    """What the service executors share: a credentials block and its name, the link name
    ``<prefix>:<block>``, and the layer's settings for a write to a service: its adapter
    retries (and checks before re-sending) itself, a look-up exists, and a write that fails is
    `failed` for the next run (the automation re-plans it), not a dead letter."""

    prefix: ClassVar[str]
    block_type: ClassVar[type[Any]]
    batch_size = 1
    can_look_up = True
    retries_inside = True
    dead_letters = False

    def __init__(self, credentials: Any, block_name: str) -> None:
        self.credentials = credentials
        self.block_name = block_name
        self.name = f"{self.prefix}:{block_name}"


class JiraIssueExecutor(ServiceExecutor):
    """Creates Jira issues in bulk (50 per request); looks them up by their dedup label.

    Payload: ``{"fields": <REST v2 fields, labels including the dedup label>, "label": ...}``.
    """

    prefix = "jira"
    block_type = JiraCredentials
    batch_size = 50
    credentials: JiraCredentials

    def apply(self, intents: Sequence[Intent]) -> dict[str, Applied | ServiceError]:
        """One bulk create; Jira's per-draft field errors refuse only their drafts."""
        from tasks.jira import create_issues_in_bulk

        try:
            result = create_issues_in_bulk(
                self.credentials,
                [intent.payload["fields"] for intent in intents],
                block_name=self.block_name,
            )
        except ServiceError as failure:
            return {intent.key: failure for intent in intents}
        answers: dict[str, Applied | ServiceError] = {
            intents[index].key: Applied(key) for index, key in result.created.items()
        }
        for failure in result.failures:
            key = intents[failure.index].key
            if failure.errors:
                refusal = "; ".join(f"{name}: {text}" for name, text in failure.errors.items())
                answers[key] = InputRefused(refusal)
            else:
                answers[key] = ServiceError(
                    failure.message, transient=True, maybe_applied=failure.outcome_unknown
                )
        return answers

    def look_up(self, intents: Sequence[Intent]) -> dict[str, str]:
        """One JQL search per 200 labels: key -> the oldest issue carrying its label."""
        from tasks.jira import issues_by_label

        keys = {intent.payload["label"]: intent.key for intent in intents}
        found = issues_by_label(self.credentials, keys, block_name=self.block_name)
        return {keys[label]: issue for label, issue in found.items()}

    def preview(self, intent: Intent) -> Preview:
        """The issue's fields as they would be created (no request: a dry run may have no
        Jira block)."""
        return make_preview(self.name, "jira_issue", jira_issue_lines(intent.payload["fields"]))


class JiraCommentExecutor(ServiceExecutor):
    """Adds a comment carrying its key as the ``moltbot`` comment property; looks it up by it.

    Payload: ``{"issue_key": "OPS-12", "body": "..."}``; the remote id ``<issue>/comment/<id>``.
    """

    prefix = "jira-comment"
    block_type = JiraCredentials
    credentials: JiraCredentials

    def apply(self, intents: Sequence[Intent]) -> dict[str, Applied | ServiceError]:
        """Comment on each intent's issue."""
        from tasks.jira import comment_on_issue

        def comment(intent: Intent) -> str:
            issue = intent.payload["issue_key"]
            added = comment_on_issue(
                self.credentials,
                issue,
                intent.payload["body"],
                marker=intent.key,
                block_name=self.block_name,
            )
            return f"{issue}/comment/{added.get('id')}"

        return apply_each(intents, comment)

    def look_up(self, intents: Sequence[Intent]) -> dict[str, str]:
        """The comments already carrying each intent's key."""
        from tasks.jira import find_comment_by_marker

        found: dict[str, str] = {}
        for intent in intents:
            issue = intent.payload["issue_key"]
            comment_id = find_comment_by_marker(
                self.credentials, issue, intent.key, block_name=self.block_name
            )
            if comment_id is not None:
                found[intent.key] = f"{issue}/comment/{comment_id}"
        return found

    def preview(self, intent: Intent) -> Preview:
        """The comment's issue and its first lines."""
        lines = [f"comment on {intent.payload['issue_key']}:", *first_lines(intent.payload["body"])]
        return make_preview(self.name, "jira_comment", lines)


class NotionPageExecutor(ServiceExecutor):
    """Creates a Notion page (its key in the ``moltbot key`` property) with all its blocks; a
    look-up finds the page by that key and completes its blocks (adopting an interrupted one).

    Payload: ``{"data_source_id": ..., "properties": {...}, "blocks": [...]}``.
    """

    prefix = "notion"
    block_type = NotionCredentials
    credentials: NotionCredentials

    def apply(self, intents: Sequence[Intent]) -> dict[str, Applied | ServiceError]:
        """Create each page (the adapter retries 429 and adopts after a lost answer)."""
        from tasks.notion import NotionApi

        with NotionApi.from_block(self.credentials, self.block_name) as api:
            return apply_each(
                intents,
                lambda intent: api.create_page(
                    data_source_id=intent.payload["data_source_id"],
                    properties=intent.payload["properties"],
                    children=intent.payload["blocks"],
                    idempotency_key=intent.key,
                )["id"],
            )

    def look_up(self, intents: Sequence[Intent]) -> dict[str, str]:
        """Pages already holding each key; their missing blocks are appended."""
        from tasks.notion import NotionApi

        found: dict[str, str] = {}
        with NotionApi.from_block(self.credentials, self.block_name) as api:
            for intent in intents:
                page = api.find_page_by_key(intent.payload["data_source_id"], intent.key)
                if page is None:
                    continue
                blocks = intent.payload["blocks"]
                stored = len(api.list_children(page["id"]))
                api.append_blocks(page["id"], blocks[stored:], known_count=stored)
                found[intent.key] = page["id"]
        return found

    def preview(self, intent: Intent) -> Preview:
        """The page's outline: its properties and its blocks (no request)."""
        payload = intent.payload
        lines = [
            f"new page in data source {payload['data_source_id']}",
            *notion_outline(payload["properties"], payload["blocks"]),
        ]
        return make_preview(self.name, "notion_page", lines)


class SheetsAppendExecutor(ServiceExecutor):
    """Appends rows to a worksheet in one request; looks an append up by re-reading the sheet.

    Payload: ``{"spreadsheet_id": ..., "worksheet": ..., "rows": [[...], ...]}``; the remote
    id is the range Sheets wrote.
    """

    prefix = "sheets"
    block_type = GoogleSheetsCredentials
    credentials: GoogleSheetsCredentials

    def apply(self, intents: Sequence[Intent]) -> dict[str, Applied | ServiceError]:
        """Append each intent's rows."""
        from tasks.sheets import append_rows

        def append(intent: Intent) -> str | None:
            payload = intent.payload
            answer = append_rows(
                self.credentials,
                payload["spreadsheet_id"],
                payload["worksheet"],
                payload["rows"],
                block_name=self.block_name,
            )
            return answer.get("updates", {}).get("updatedRange")

        return apply_each(intents, append)

    def look_up(self, intents: Sequence[Intent]) -> dict[str, str]:
        """Appends whose rows are already the worksheet's last rows."""
        from tasks.sheets import rows_at_end

        return {
            intent.key: f"{intent.payload['worksheet']} (found at the end)"
            for intent in intents
            if rows_at_end(
                self.credentials,
                intent.payload["spreadsheet_id"],
                intent.payload["worksheet"],
                intent.payload["rows"],
                block_name=self.block_name,
            )
        }

    def preview(self, intent: Intent) -> Preview:
        """How many rows would be appended where, and the first ones."""
        payload = intent.payload
        rows = payload["rows"]
        lines = [f"append {len(rows)} row(s) to {payload['worksheet']!r}"]
        lines += [f"  {' | '.join(map(str, row))}" for row in rows[:3]]
        if len(rows) > 3:
            lines.append(f"  … {len(rows) - 3} more row(s)")
        return make_preview(self.name, "sheets_append", lines)


SERVICE_EXECUTORS: tuple[type[ServiceExecutor], ...] = (
    JiraIssueExecutor,
    JiraCommentExecutor,
    NotionPageExecutor,
    SheetsAppendExecutor,
)
"""Every executor of a service write, by its link prefix (``jira:<block>`` …)."""
