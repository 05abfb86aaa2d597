"""The ticket-creation flow: form answers or events -> drafts -> one dedup search -> Jira, once."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from itertools import count
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from blocks.jira import JiraCredentials
from blocks.sheets import GoogleSheetsCredentials
from flows.shared.forms import (
    ResponseWindow,
    parse_form_timestamps,
    select_window,
    timestamp_column_of,
)
from flows.shared.runs import AUTOMATION_FLOW
from flows.ticket_creation import ENTRY, shadow
from flows.ticket_creation.drafts import (
    AUTOMATION,
    SourceItem,
    TicketDraft,
    build_drafts,
    event_item,
    form_items,
    parse_events,
    read_events_file,
)
from flows.ticket_creation.effects import (
    browse_url,
    comment_intents,
    create_intents,
    creators,
    draft_outcomes,
    dry_run_effects,
    ledger_entries,
    record_intents,
    seen_prefixes,
)
from flows.ticket_creation.mapping import (
    TicketMapping,
    choose_mapping,
    load_mappings,
    mapping_for_event,
)
from flows.ticket_creation.plan import LedgerEntry, Plan, plan_drafts
from flows.ticket_creation.render import (
    comment_body,
    description_footer,
    draft_rows,
    handoff_message,
    review_request,
    run_summary,
)
from flows.ticket_creation.review import (
    DECISION_FIELDS,
    REVIEW_TABLE,
    ReviewDecision,
    ReviewOutcome,
    ReviewPolicy,
    apply_decision,
    poll_seconds,
    refusal,
    review_form,
    review_key,
)
from moltbot.audit import record as audit_record
from moltbot.audit import run_actor
from moltbot.blockdocs import load_block
from moltbot.config.project import ProjectConfig
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects import Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.effects.services import JiraCommentExecutor, JiraIssueExecutor
from moltbot.errors import DeliveryFailed, InputError
from moltbot.masking import mask_text
from moltbot.runlabels import (
    artifact_description,
    flow_run_namer,
    label_current_run,
    local_minute,
)
from moltbot.state.audit import AuditAction
from moltbot.state.reviews import APPROVED, REJECTED, TIMED_OUT
from moltbot.state.watermarks import Watermark, WatermarkMoved
from tasks.artifacts import TableColumn, publish_markdown, publish_table, readable_rows
from tasks.effects import (
    channel_destinations,
    count_done,
    deliver,
    perform_effects,
    read_effects,
    routes_for,
)
from tasks.inbox import read_inbox_events
from tasks.jira import find_labelled_issues
from tasks.reviews import ask_review, decide_review
from tasks.shadow import record_run_input
from tasks.sheets import load_worksheet
from tasks.watermarks import advance_watermark, hold_watermark, read_watermark

ARTIFACT_KEYS = {"summary": "ticket-creation", "drafts": "ticket-creation-drafts"}


class TicketCreationResult(RunReport):
    """A ticket-creation run: each draft's fate by category, the review, the sheet window."""

    created: list[dict[str, Any]]
    commented: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    in_progress: list[dict[str, Any]]
    unchanged: int
    drafts: list[dict[str, Any]]
    review: dict[str, Any] | None
    window: dict[str, Any] | None
    jira_checked: bool


ARTIFACT_MAX_ROWS = 2000
DRAFT_COLUMNS = (
    TableColumn("draft", "Draft", "초안"),
    TableColumn("item", "Item", "항목"),
    TableColumn(
        "action",
        "Action",
        "처리",
        values={
            "create": ("to create", "생성 예정"),
            "comment": ("to comment", "댓글 예정"),
            "record": ("to record", "기록 예정"),
            "done": ("done before", "이미 처리됨"),
            "unchanged": ("done before", "이미 처리됨"),
            "created": ("created", "생성됨"),
            "recovered": ("created (recovered)", "생성됨 (복구)"),
            "commented": ("commented", "댓글 작성"),
            "rejected": ("rejected", "거절됨"),
            "failed": ("failed", "실패"),
            "in_progress": ("held by another run", "다른 실행이 처리 중"),
        },
    ),
    TableColumn("issue", "Issue", "이슈"),
    TableColumn("project", "Project", "프로젝트"),
    TableColumn("type", "Type", "유형"),
    TableColumn("priority", "Priority", "우선순위"),
    TableColumn("summary", "Summary", "요약"),
    TableColumn("components", "Components", "구성 요소"),
    TableColumn("assignee", "Assignee", "담당자"),
    TableColumn("due", "Due", "마감일", kind="date"),
    TableColumn("dedup_key", "Dedup key", "중복 방지 키"),
)


def batch_label(parameters: Mapping[str, Any]) -> str:
    """What a run reads, in a few words: `3 events`, `1 webhook event`, `form answers`."""

    def count(n: int, noun: str) -> str:
        return f"{n:,} {noun}{'' if n == 1 else 's'}"

    if isinstance(parameters.get("events"), list):
        return count(len(parameters["events"]), "event")
    if isinstance(parameters.get("inbox_ids"), list):
        return count(len(parameters["inbox_ids"]), "webhook event")
    if parameters.get("events_file"):
        return "events file"
    if parameters.get("worksheet"):
        return "form answers"
    return ""


def run_label(parameters: Mapping[str, Any], timezone: str, now: datetime) -> str:
    """What a run's name says: its local start time and batch (`2026-12-03 21:00 (3 events)`)."""
    batch = batch_label(parameters)
    checked = local_minute(now, timezone)
    return f"{checked} ({batch})" if batch else checked


class ReviewTimedOut(DeliveryFailed):
    """Nobody answered the review in time, so nothing was created (exit 1, result reported)."""


# --------------------------------------------------------------------------- parameters


def _check_params(
    *,
    events: list[dict[str, Any]] | None,
    events_file: str | None,
    inbox_ids: list[str] | None,
    sheet: tuple[str | None, str | None, str | None],
    jira_block: str | None,
    review_timeout_seconds: int,
    dry_run: bool,
) -> str:
    """Which input the run reads (``events`` or ``form``), after checking the parameters.

    Raises:
        InputError: no input or two, an incomplete sheet, no Jira block outside a dry run, or a
            review timeout that is not positive.
    """
    given = [
        name
        for name, present in (
            ("events", events is not None),
            ("events_file", events_file is not None),
            ("inbox_ids", inbox_ids is not None),
            ("a sheet", any(sheet)),
        )
        if present
    ]
    if len(given) != 1:
        raise InputError(
            "give exactly one input: events, events_file, inbox_ids, or a sheet "
            f"(sheets_block, spreadsheet_id, worksheet); got {', '.join(given) or 'none'}"
        )
    if any(sheet) and not all(sheet):
        raise InputError("a sheet input needs sheets_block, spreadsheet_id and worksheet")
    if jira_block is None and not dry_run:
        raise InputError("jira_block is required (only a dry run can go without Jira)")
    if review_timeout_seconds <= 0:
        raise InputError(
            f"review_timeout_seconds must be more than 0, got {review_timeout_seconds}"
        )
    return "form" if any(sheet) else "events"


# --------------------------------------------------------------------------- tasks


@task(name="read-events", cache_policy=NO_CACHE)
def read_event_items(
    events: list[Any] | None,
    events_file: str | None,
    *,
    mappings: dict[str, TicketMapping],
    mapping: str | None,
    timezone: str,
) -> list[SourceItem]:
    """Validate the events (given, or read from a JSON-lines file) and pick each one's mapping.

    Raises:
        InputError: a malformed event, or one that no mapping (or the named one) takes.
    """
    if events_file is not None:
        records = read_events_file(events_file)
    else:
        if not isinstance(events, list):
            raise InputError("events must be a list of JSON objects")
        records = [(f"events[{index}]", record) for index, record in enumerate(events)]
    return event_items(records, mappings=mappings, mapping=mapping, timezone=timezone)


def event_items(
    records: list[tuple[str, Any]],
    *,
    mappings: dict[str, TicketMapping],
    mapping: str | None,
    timezone: str,
) -> list[SourceItem]:
    """Events (each with its origin, e.g. ``events[0]``) as items with their mappings.

    Raises:
        InputError: a malformed event, or one that no mapping (or the named one) takes.
    """
    parsed = parse_events(records, timezone)
    return [
        event_item(event, mapping_for_event(mappings, mapping, event.type, event.origin), timezone)
        for event in parsed
    ]


@task(name="select-form-answers", cache_policy=NO_CACHE)
def select_form_items(
    frame: pd.DataFrame,
    watermark: Watermark,
    *,
    mapping: TicketMapping,
    stream: str,
    timezone: str,
    now: datetime,
) -> tuple[ResponseWindow, list[SourceItem]]:
    """The answers after the watermark (or the held window of an unfinished run), as items.

    Raises:
        InputError: an empty sheet or a missing timestamp column.
    """
    column = timestamp_column_of(frame, mapping.timestamp_column)
    times = parse_form_timestamps(frame[column], timezone)
    window = select_window(
        frame,
        times,
        timestamp_column=column,
        position=watermark.position,
        pending=watermark.pending,
    )
    items = form_items(
        window.rows,
        window.times,
        stream=stream,
        timestamp_column=column,
        mapping=mapping,
        timezone=timezone,
        now=now,
    )
    return window, items


@task(name="draft-tickets", cache_policy=NO_CACHE)
def draft_tickets(items: list[SourceItem], *, timezone: str, locale: str) -> list[TicketDraft]:
    """Render every item into a Jira draft (all templates run before anything is created).

    Raises:
        InputError: a template or choice failed for some item, naming mapping, line and item.
    """
    footer = partial(description_footer, locale=locale, timezone=timezone)
    return build_drafts(items, timezone=timezone, footer=footer)


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION, run_label),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def ticket_creation(
    events: list[dict[str, Any]] | None = None,
    events_file: str | None = None,
    inbox_ids: list[str] | None = None,
    sheets_block: str | None = None,
    spreadsheet_id: str | None = None,
    worksheet: str | None = None,
    jira_block: str | None = None,
    mapping: str | None = None,
    review: bool = False,
    review_timeout_seconds: int = 3600,
    channels: list[str | list[str]] | None = None,
    timezone: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Turn form answers or events into Jira issues: exactly one per dedup key, ever.

    Order of effects, and why neither a retry nor a crash duplicates an issue:

    1. Load and validate everything: parameters, the mappings in `moltbot.toml`, the Jira,
       Sheets and channel blocks, the input, and every template rendered for every item.
       Bad input stops the run here, before any ledger row, watermark or Jira request.
    2. Each draft carries its dedup key (source + source id: the event's type and id, or the
       response's stream, timestamp cell and content hash; or the mapping's `dedup` value) and
       the label ``moltbot-<hash>`` of its issue's ledger key
       ``ticket-creation:<dedup key>:jira:<project>``.
    3. One JQL search finds which labels exist (per 200 labels). With the ledger it decides
       each draft: create (the first occurrence of a new key), comment (a later occurrence),
       record (the occurrence that created the issue in a run that died before recording
       it), or nothing (handled before). For a sheet, the window is held in the watermark.
    4. With `review`, the drafts to create are shown (table artifact and resume form) and the
       run pauses until a reviewer approves, rejects or edits them; on timeout nothing is
       created and the run fails saying so (the held window is offered again next run).
    5. Through the effects layer: the issues found by label but not recorded are recorded;
       new issues are claimed (issue and occurrence keys), created in bulk (50 per request,
       `Retry-After` honoured) and recorded with their keys; a refused draft is `failed` with
       Jira's field error and does not stop the others. An ambiguous failure (5xx, lost
       connection after Jira applied it) is settled by a label search, not by re-sending.
    6. Each recurrence gets one comment ("seen again at …, N times in total"), claimed under
       its occurrence key and carrying that key as its ``moltbot`` comment property, so
       re-running the same input comments nothing.
    7. Only when every item is settled does the sheet's watermark advance; then one hand-off
       message lists the created issues and comments; then the artifacts.

    A crash leaves pending claims. The next run takes them over at once when their holder is
    gone (its process ended on this host, or Prefect says its flow run is over; otherwise after
    the 15-minute lease), and looks each effect up before applying it: issues by their label,
    comments by their marker, so nothing is created or commented twice. While the holder is
    alive, a run waits for it (`MOLTBOT_HOLD_WAIT_SECONDS`), then fails naming the held items
    and the run holding them, never reporting them done.

    Args:
        events: events as JSON objects with at least `id`, `type`, `occurred_at` (ISO 8601)
            and `payload`.
        events_file: a JSON-lines file of such events, instead.
        inbox_ids: webhook inbox entries whose events to read, instead (what the webhook
            gateway passes, so payloads stay out of the run's parameters).
        sheets_block: a Google Sheets credentials block, to read form answers instead.
        spreadsheet_id: the responses spreadsheet, with `sheets_block`.
        worksheet: the responses worksheet's title, with `sheets_block`.
        jira_block: the Jira credentials block (a dry run without it searches nothing).
        mapping: the mapping's name in `[ticket_creation.mappings]`; default: the only form
            mapping for a sheet, or per event the mapping whose `event_types` has its type.
        review: pause for a human review of the new issues before creating them.
        review_timeout_seconds: how long the review waits; then nothing is created.
        channels: where the hand-off note goes (default: the outbox).
        timezone: IANA timezone of times in texts and due dates; default `MOLTBOT_TIMEZONE`.
        dry_run: draft and search, but create, comment, record and send nothing.

    Returns:
        The `TicketCreationResult` as JSON: per category the drafts (created, commented,
        rejected, failed, in_progress; unchanged counted), every draft as it is (or would be)
        sent with its action, the review, the window, the hand-off deliveries, artifacts.

    Raises:
        DeliveryFailed: some item or the hand-off failed (the result is attached).
        ReviewTimedOut: the review was not answered in time.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    locale = settings.locale
    timezone = checked_timezone(timezone or settings.timezone)
    sheet = (sheets_block, spreadsheet_id, worksheet)
    source = _check_params(
        events=events,
        events_file=events_file,
        inbox_ids=inbox_ids,
        sheet=sheet,
        jira_block=jira_block,
        review_timeout_seconds=review_timeout_seconds,
        dry_run=dry_run,
    )
    now = datetime.now(UTC)
    checked = local_minute(now, timezone)
    batch = batch_label(
        {
            "events": events,
            "inbox_ids": inbox_ids,
            "events_file": events_file,
            "worksheet": worksheet,
        }
    )
    mappings = load_mappings(ProjectConfig.load(), locale=locale)
    routes = routes_for(ENTRY, "info", channels)
    destinations = channel_destinations(link for route in routes for link in route.links)
    jira = load_block(JiraCredentials, jira_block) if jira_block else None

    window: ResponseWindow | None = None
    watermark: Watermark | None = None
    stream = f"{spreadsheet_id}/{worksheet}"
    if source == "form":
        form_mapping = choose_mapping(mappings, mapping, "form")
        sheets = load_block(GoogleSheetsCredentials, str(sheets_block))
        frame = load_worksheet(sheets, str(spreadsheet_id), str(worksheet), block_name=sheets_block)
        watermark = read_watermark(AUTOMATION, stream)
        window, items = select_form_items(
            frame, watermark, mapping=form_mapping, stream=stream, timezone=timezone, now=now
        )
    else:
        if inbox_ids is not None:
            events = read_inbox_events(inbox_ids)
        items = read_event_items(
            events, events_file, mappings=mappings, mapping=mapping, timezone=timezone
        )
    drafts = draft_tickets(quote(items), timezone=timezone, locale=locale)

    existing: dict[str, str] = {}
    if jira is not None and drafts:
        existing = find_labelled_issues(jira, [d.label for d in drafts], block_name=str(jira_block))
    keys = [key for d in drafts for key in (d.ledger_key, d.occurrence_key)]
    entries = ledger_entries(read_effects(keys)) if drafts else {}
    plan = plan_drafts(drafts, existing, entries)
    logger.info(
        "%d draft(s): %s",
        len(drafts),
        ", ".join(f"{n} {a}" for a, n in _action_counts(plan).items()) or "nothing to do",
    )
    url: Callable[[str], str] = partial(browse_url, jira.server_url) if jira is not None else str

    if dry_run:
        if review:
            logger.info("Dry run: no review, nothing is created")
        result = _result(
            plan, {}, None, window, url=url, jira_checked=jira is not None, dry_run=True
        )
        # What each issue and comment would be, through the executors that would make them.
        result["effects"] = dry_run_effects(
            plan, jira, jira_block, body=partial(comment_body, locale=locale, timezone=timezone)
        )
        result["artifacts"] = _publish(
            plan, result, {}, timezone, locale, when=checked, batch=batch, dry_run=True
        )
        return finish_run(TicketCreationResult(**result))

    assert jira is not None and jira_block is not None  # checked with the parameters
    if window is not None and window.position is not None:
        hold_watermark(AUTOMATION, stream, window.as_pending())
    decision: ReviewOutcome | None = None
    if review:
        plan, decision = _review(
            plan,
            mappings,
            timezone,
            locale,
            review_timeout_seconds,
            description=artifact_description(
                AUTOMATION, checked, batch, "drafts awaiting review", dry_run=False
            ),
        )
        if decision.status == "timed_out":
            result = _result(plan, {}, decision, window, url=url, jira_checked=True, dry_run=False)
            result["artifacts"] = _publish(
                plan, result, {}, timezone, locale, when=checked, batch=batch, dry_run=False
            )
            raise ReviewTimedOut(
                f"nobody answered the review within {review_timeout_seconds} s: "
                f"none of the {len(plan.having('create'))} new issue(s) was created",
                TicketCreationResult(**result).as_result(),
            )

    if source == "events":
        _record_input(
            plan,
            events=events if inbox_ids is None else None,
            events_file=events_file,
            inbox_ids=inbox_ids,
            mapping=mapping,
            existing=existing,
            entries=entries,
            timezone=timezone,
            locale=locale,
        )
    outcomes = _perform(plan, jira, jira_block, locale=locale, timezone=timezone)
    result = _result(plan, outcomes, decision, window, url=url, jira_checked=True, dry_run=False)
    if window is not None and window.position is not None:
        result["window"]["committed"] = _commit(window, watermark, stream, result)

    result["deliveries"] = _hand_off(result, plan, routes, destinations, url, locale)
    result["artifacts"] = _publish(
        plan, result, outcomes, timezone, locale, when=checked, batch=batch, dry_run=False
    )
    items = [
        *(f"{item['item']}: {item['error']}" for item in result["failed"]),
        *(
            f"{item['item']}: held by flow run {item.get('held_by')}, not done by this run"
            for item in result["in_progress"]
        ),
    ]
    return finish_run(TicketCreationResult(**result), other_failures=items)


def _record_input(
    plan: Plan,
    *,
    existing: dict[str, str],
    entries: dict[str, LedgerEntry],
    timezone: str,
    locale: str,
    **source: Any,
) -> None:
    """Keep the run's events and what its plan read, with the issues and comments it is about
    to make, for `moltbot shadow` (before performing: the ledger then says what was done).
    A run with nothing to create or comment is kept too: a changed mapping may give it a
    ticket."""
    comments = plan.having("comment")
    counted = count_done(AUTOMATION, seen_prefixes(comments)) if comments else {}
    seen = {prefix.removesuffix(":seen:"): number for prefix, number in counted.items()}
    record_run_input(
        AUTOMATION,
        shadow.KIND,
        shadow.snapshot(
            **source,
            existing=existing,
            entries=entries,
            seen=seen,
            rejected=[planned.draft.id for planned in plan.having("rejected")],
            timezone=timezone,
            locale=locale,
        ),
        shadow.effects(plan, seen, locale=locale, timezone=timezone),
    )


def _perform(
    plan: Plan, jira: JiraCredentials, jira_block: str, *, locale: str, timezone: str
) -> dict[str, dict[str, Any]]:
    """Record the issues found, create the new ones in bulk, then comment on the recurrences,
    all through the effects layer (claims, look-ups by label and by comment marker, records).

    Returns:
        Draft id -> its outcome, for every draft acted on.
    """
    issues = JiraIssueExecutor(jira, jira_block)
    comments = JiraCommentExecutor(jira, jira_block)
    # Each step runs only when it has work, so a run with nothing new shows no empty tasks.
    recorded = perform_effects(record_intents(plan, issues.name), {issues.name: issues})
    created = perform_effects(create_intents(creators(plan), issues.name), {issues.name: issues})
    known = {
        intent_key: outcome.remote_id
        for intent_key, outcome in ((o.key, o) for o in created)
        if outcome.remote_id and outcome.status in ("done", "already_done")
    }
    planned_comments = plan.having("comment")
    seen = count_done(AUTOMATION, seen_prefixes(planned_comments)) if planned_comments else {}
    intents, numbers = comment_intents(
        planned_comments,
        known,
        {prefix.removesuffix(":seen:"): count for prefix, count in seen.items()},
        comments.name,
        partial(comment_body, locale=locale, timezone=timezone),
    )
    commented = perform_effects(intents, {comments.name: comments})
    return draft_outcomes(plan, created, commented, recorded, numbers)


def _action_counts(plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}
    for planned in plan.drafts:
        counts[planned.action] = counts.get(planned.action, 0) + 1
    return counts


def _review(
    plan: Plan,
    mappings: dict[str, TicketMapping],
    timezone: str,
    locale: str,
    timeout: int,
    *,
    description: str,
) -> tuple[Plan, ReviewOutcome]:
    """Show the new drafts and pause until an allowed reviewer answers (or the timeout).

    The request and its decision live in the ledger under `review_key(plan)`: a re-run of the
    same drafts (retried, rescheduled, crashed) applies the decision already taken instead of
    asking again, and the Jira effects it then performs are claimed as usual, so nothing is
    created twice. Every decision, refusal and timeout is an audit entry.
    """
    logger = get_run_logger()
    if not plan.having("create"):
        return plan, ReviewOutcome(status="not_needed")
    privacy = {name: m.privacy for name, m in mappings.items()}
    policy = _review_policy()
    key = review_key(plan)
    requester = _requester()
    asked = ask_review(key, automation=AUTOMATION, requester=requester, flow_run_id=_flow_run_id())
    if asked.decided and asked.decision is not None:
        logger.info(
            "These drafts were reviewed already (%s by %s): applying that decision, "
            "not asking again",
            asked.status,
            asked.reviewer,
        )
        decision = ReviewDecision(**asked.decision)
        reviewed, outcome = apply_decision(plan, decision, privacy)
        return reviewed, replace(outcome, decided_earlier=True, key=key)

    rows = draft_rows(plan, {}, timezone)
    publish_table(
        ARTIFACT_KEYS["drafts"],
        quote(_readable(rows[:ARTIFACT_MAX_ROWS], locale)),
        description=description,
    )
    form = review_form(plan, review_request(rows, locale=locale, timeout=timeout))
    logger.info(
        "Waiting up to %d s for a review of %d draft(s)", timeout, len(plan.having("create"))
    )
    deadline = time.monotonic() + timeout
    for attempt in count():
        remaining = max(0.0, deadline - time.monotonic())
        try:
            if remaining <= 0:
                raise FlowPauseTimeout("no time left for the review")
            answer = pause_flow_run(
                wait_for_input=form,
                timeout=math.ceil(remaining),
                poll_interval=poll_seconds(timeout),
                key=f"review-{attempt}",
            )
        except FlowPauseTimeout:
            decide_review(key, status=TIMED_OUT, reviewer=None, reason=None, decision=None)
            audit_record(
                AuditAction.REVIEW_TIMEOUT,
                f"review {key}",
                actor="moltbot",
                automation=AUTOMATION,
                outcome="nothing created",
                detail=f"no allowed answer within {timeout} s",
            )
            logger.warning("Review timed out after %d s: nothing will be created", timeout)
            return plan, ReviewOutcome(status="timed_out", key=key)
        refused = refusal(answer.reviewer, requester, policy)
        if refused is None:
            break
        audit_record(
            AuditAction.APPROVAL_REFUSED,
            f"review {key}",
            actor=f"reviewer:{answer.reviewer.strip()}",
            automation=AUTOMATION,
            outcome="refused",
            detail=refused,
        )
        logger.warning("Review answer refused: %s; waiting for another answer", refused)
    stored = decide_review(
        key,
        status=APPROVED if answer.approve else REJECTED,
        reviewer=mask_text(answer.reviewer.strip()),
        reason=mask_text(answer.reason) or None,
        decision=answer.model_dump(mode="json", include=set(DECISION_FIELDS) | {"reviewer"}),
    )
    if stored.decision is not None and stored.reviewer != mask_text(answer.reviewer.strip()):
        # Another run of the same drafts was answered first: its decision holds for both.
        answer = ReviewDecision(**stored.decision)
    reviewed, outcome = apply_decision(plan, answer, privacy)
    outcome = replace(outcome, key=key)
    _audit_decision(key, answer, outcome)
    logger.info(
        "Review by %s: %d approved, %d rejected, %d edited",
        outcome.reviewer,
        len(outcome.approved),
        len(outcome.rejected),
        len(outcome.edited),
    )
    if outcome.unknown:
        logger.warning("Review named %d unknown draft(s): ignored", len(outcome.unknown))
    return reviewed, outcome


def _review_policy() -> ReviewPolicy:
    config = ProjectConfig.load()
    return ReviewPolicy.from_table(config.table(*REVIEW_TABLE), config.where(*REVIEW_TABLE))


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None


def _requester() -> str | None:
    """The person whose run asks for the review, when one is known (a CLI run's OS user)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is None:
        return None
    return run_actor(
        run.tags or [],
        deployment=str(run.deployment_id) if run.deployment_id else None,
        auto_scheduled=bool(run.auto_scheduled),
    )


def _audit_decision(key: str, answer: ReviewDecision, outcome: ReviewOutcome) -> None:
    """One audit entry per kind of decision taken: approve, reject, edit."""
    actor = f"reviewer:{answer.reviewer.strip()}"
    parts = [
        (AuditAction.APPROVE, outcome.approved, {"approved": outcome.approved}),
        (AuditAction.REJECT, outcome.rejected, {"rejected": outcome.rejected}),
        (AuditAction.EDIT, outcome.edited, {"edited": outcome.edited}),
    ]
    for action, drafts, parameters in parts:
        if drafts or (action == AuditAction.REJECT and not answer.approve):
            audit_record(
                action,
                f"review {key}",
                actor=actor,
                automation=AUTOMATION,
                parameters=parameters,
                outcome=f"{len(drafts)} draft(s)",
                detail=answer.reason or None,
            )


def _commit(
    window: ResponseWindow, watermark: Watermark | None, stream: str, result: dict[str, Any]
) -> bool:
    """Advance the sheet's watermark past the window once nothing is left unfinished."""
    if result["failed"] or result["in_progress"]:
        get_run_logger().warning(
            "Watermark kept at its place: the next run retries rows %s-%s",
            window.first_row,
            window.last_row,
        )
        return False
    assert window.position is not None and watermark is not None
    try:
        advance_watermark(AUTOMATION, stream, window.position, watermark.position)
    except WatermarkMoved as moved:
        get_run_logger().warning("%s", moved)
        return False
    return True


def _hand_off(
    result: dict[str, Any],
    plan: Plan,
    routes: list[Route],
    destinations: dict[str, Any],
    url: Callable[[str], str],
    locale: str,
) -> list[dict[str, Any]]:
    message = handoff_message(
        result["created"],
        result["commented"],
        result["failed"],
        {planned.draft.id: planned.draft for planned in plan.drafts},
        url=url,
        locale=locale,
    )
    if message is None:
        return []
    return deliver(message, routes, destinations)


def _result(
    plan: Plan,
    outcomes: dict[str, dict[str, Any]],
    decision: ReviewOutcome | None,
    window: ResponseWindow | None,
    *,
    url: Callable[[str], str],
    jira_checked: bool,
    dry_run: bool,
) -> dict[str, Any]:
    created: list[dict[str, Any]] = []
    commented: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    in_progress: list[dict[str, Any]] = []
    unchanged = 0
    drafts: list[dict[str, Any]] = []
    for planned in plan.drafts:
        draft = planned.draft
        outcome = outcomes.get(draft.id)
        status = outcome["status"] if outcome else planned.action
        who = {"draft": draft.id, "item": draft.item, "dedup_key": draft.dedup_key}
        key = (outcome or {}).get("key") or planned.issue_key
        drafts.append({**draft.as_dict(), "action": planned.action, "issue_key": key})
        if dry_run:
            continue
        if status in ("created", "recovered"):
            created.append({"key": key, **who, "url": url(key), "recovered": status == "recovered"})
        elif status == "commented":
            assert outcome is not None
            commented.append(
                {
                    "key": key,
                    **who,
                    "comment_id": outcome["comment_id"],
                    "seen": outcome["seen"],
                    "recovered": outcome.get("recovered", False),
                }
            )
        elif status == "rejected":
            rejected.append(who)
        elif status == "failed":
            assert outcome is not None
            failed.append({**who, "error": outcome["error"], "transient": outcome["transient"]})
        elif status == "in_progress":
            in_progress.append({**who, "held_by": (outcome or {}).get("held_by")})
        elif status in ("done", "unchanged"):
            unchanged += 1
        elif status in ("create", "comment", "record"):
            # Planned but not performed: a review that timed out.
            continue
    return {
        "created": created,
        "commented": commented,
        "rejected": rejected,
        "failed": failed,
        "in_progress": in_progress,
        "unchanged": unchanged,
        "drafts": drafts,
        "review": decision.as_dict() if decision is not None else None,
        "window": _window(window),
        "jira_checked": jira_checked,
        "dry_run": dry_run,
        "deliveries": [],
    }


def _window(window: ResponseWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "rows": len(window.rows),
        "first_row": window.first_row,
        "last_row": window.last_row,
        "resumed": window.resumed,
        "realigned": window.realigned,
        "committed": False,
    }


def _publish(
    plan: Plan,
    result: dict[str, Any],
    outcomes: dict[str, dict[str, Any]],
    timezone: str,
    locale: str,
    *,
    when: str,
    batch: str,
    dry_run: bool,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page: it must not become the latest version of
    # the keyed artifacts analysts follow.
    keys = dict.fromkeys(ARTIFACT_KEYS) if dry_run else ARTIFACT_KEYS
    rows = draft_rows(plan, outcomes, timezone)
    shown = f"first {ARTIFACT_MAX_ROWS:,} of {len(rows):,}" if len(rows) > ARTIFACT_MAX_ROWS else ""
    window = result.get("window")
    if window and window["rows"]:
        batch = f"sheet rows {window['first_row']}–{window['last_row']}"
    drafts = f"{len(rows):,} draft{'' if len(rows) == 1 else 's'}"
    published = [
        {
            "key": keys["summary"],
            "id": publish_markdown(
                keys["summary"],
                run_summary(result, locale=locale),
                description=artifact_description(AUTOMATION, when, batch, drafts, dry_run=dry_run),
            ),
        },
        {
            "key": keys["drafts"],
            # quote: Prefect would otherwise walk every cell looking for task results to wait on.
            "id": publish_table(
                keys["drafts"],
                quote(_readable(rows[:ARTIFACT_MAX_ROWS], locale)),
                description=artifact_description(
                    AUTOMATION,
                    when,
                    batch,
                    f"drafts and what became of them {shown}".strip(),
                    dry_run=dry_run,
                ),
            ),
        },
    ]
    return published


def _readable(rows: list[dict[str, Any]], locale: str) -> list[dict[str, str]]:
    return readable_rows(rows, DRAFT_COLUMNS, locale=locale, currency=get_settings().currency)
