"""Ticket-creation wording: description footer, recurrence comment, hand-off note, artifacts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flows.ticket_creation import ENTRY
from flows.ticket_creation.drafts import AUTOMATION, SourceItem, TicketDraft, short_hash
from flows.ticket_creation.plan import Plan
from moltbot.masking import mask_text
from moltbot.messages import Message, slack_sections
from moltbot.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
# Columns of the drafts table artifact, in order.
DRAFT_COLUMNS = (
    "draft",
    "item",
    "action",
    "issue",
    "project",
    "type",
    "priority",
    "summary",
    "labels",
    "components",
    "assignee",
    "due",
    "dedup_key",
)


def local_time(moment: datetime, timezone: str) -> str:
    """``2026-11-24 15:12 KST``: a time as people in `timezone` read it."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def description_footer(item: SourceItem, dedup_key: str, *, locale: str, timezone: str) -> str:
    """The line under every description saying where the issue came from."""
    return render_template(
        TEMPLATES,
        locale,
        "footer.txt.j2",
        mapping=item.mapping.name,
        source=item.source,
        item=item.label,
        occurred_at=local_time(item.occurred_at, timezone),
        dedup_key=dedup_key,
    ).strip()


def comment_body(draft: TicketDraft, seen: int, *, locale: str, timezone: str) -> str:
    """The recurrence comment: ``Seen again at …, N times in total.`` and what came in."""
    return render_template(
        TEMPLATES,
        locale,
        "comment.txt.j2",
        occurred_at=local_time(draft.occurred_at, timezone),
        seen=seen,
        item=draft.item,
        summary=draft.summary,
    ).strip()


def handoff_message(
    created: Sequence[Mapping[str, Any]],
    commented: Sequence[Mapping[str, Any]],
    failed: Sequence[Mapping[str, Any]],
    drafts: Mapping[str, TicketDraft],
    *,
    url: Callable[[str], str],
    locale: str,
) -> Message | None:
    """The run's one hand-off note: created issues with links, comments added, failures.

    Its key is derived from the issues and comments it lists, so a retried run that reaches
    the same outcome does not post it twice. None when nothing was created or commented.

    Args:
        created: ``created``/``recovered`` outcomes (``key``, ``draft``, ``item``).
        commented: ``commented`` outcomes (``key``, ``comment_id``, ``seen``).
        failed: ``failed`` outcomes (``item``, ``error``).
        drafts: draft id -> draft, for the summaries.
        url: issue key -> its page.
        locale: ``en`` or ``ko``.
    """
    if not created and not commented:
        return None

    def entry(outcome: Mapping[str, Any]) -> dict[str, Any]:
        draft = drafts[outcome["draft"]]
        # The chat is not Jira: whatever the mapping keeps in the ticket, mask it here.
        return {
            **outcome,
            "url": url(outcome["key"]),
            "summary": mask_text(draft.summary),
            "item": mask_text(outcome["item"]),
        }

    context = {
        "created": [entry(outcome) for outcome in created],
        "commented": [entry(outcome) for outcome in commented],
        "failed": [
            {"item": mask_text(o["item"]), "error": mask_text(str(o.get("error")))} for o in failed
        ],
    }
    title = render_template(TEMPLATES, locale, "title.txt.j2", **context).strip()
    markdown = render_template(TEMPLATES, locale, "handoff.md.j2", title=title, **context)
    html = render_template(TEMPLATES, locale, "handoff.html.j2", title=title, **context)
    lines = render_template(TEMPLATES, locale, "handoff.mrkdwn.j2", **context)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        *slack_sections([line for line in lines.splitlines() if line.strip()]),
    ]
    listed = sorted(
        [outcome["key"] for outcome in created]
        + [f"{o['key']}/comment/{o['comment_id']}" for o in commented]
    )
    digest = short_hash(*listed)
    return Message(
        key=f"{AUTOMATION}:handoff:{digest}",
        rule=ENTRY.rule("handoff"),
        automation=AUTOMATION,
        severity="warning" if failed else "info",
        title=title,
        text=markdown,
        markdown=markdown,
        html=html,
        slack_blocks=blocks,
        file_stem=f"{AUTOMATION}-{digest[:8]}",
    )


def draft_rows(
    plan: Plan, outcomes: Mapping[str, Mapping[str, Any]], timezone: str
) -> list[dict[str, Any]]:
    """One artifact row per draft with its action and result, personal data masked."""
    rows = []
    for planned in plan.drafts:
        draft = planned.draft
        fields = draft.fields
        outcome = outcomes.get(draft.id, {})
        rows.append(
            {
                "draft": draft.id,
                "item": mask_text(draft.item),
                "action": outcome.get("status", planned.action),
                "issue": outcome.get("key") or planned.issue_key or "",
                "project": fields["project"],
                "type": fields["issuetype"],
                "priority": fields.get("priority", ""),
                "summary": mask_text(draft.summary),
                "labels": mask_text(", ".join(fields.get("labels", []))),
                "components": ", ".join(fields.get("components", [])),
                "assignee": fields.get("assignee", ""),
                "due": fields.get("duedate", ""),
                "dedup_key": mask_text(draft.dedup_key),
            }
        )
    return rows


def review_request(rows: Sequence[Mapping[str, Any]], *, locale: str, timeout: float) -> str:
    """The text shown on the resume form: how to answer, and the drafts awaiting review."""
    return render_template(
        TEMPLATES,
        locale,
        "review_request.md.j2",
        rows=[row for row in rows if row["action"] == "create"],
        timeout_minutes=round(timeout / 60, 1),
    )


def run_summary(result: Mapping[str, Any], *, locale: str) -> str:
    """The run's markdown artifact: counts, created issues, comments, failures, review."""
    return render_template(
        TEMPLATES,
        locale,
        "run_summary.md.j2",
        created=[{**o, "item": mask_text(o["item"])} for o in result["created"]],
        commented=[{**o, "item": mask_text(o["item"])} for o in result["commented"]],
        failed=[
            {**o, "item": mask_text(o["item"]), "error": mask_text(str(o["error"]))}
            for o in result["failed"]
        ],
        rejected=result["rejected"],
        in_progress=result["in_progress"],
        unchanged=result["unchanged"],
        drafts=len(result["drafts"]),
        review=result["review"],
        jira_checked=result["jira_checked"],
        dry_run=result["dry_run"],
    )
