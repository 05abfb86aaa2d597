"""Ticket-creation effects on Jira, each guarded by the ledger: find, record, create, comment."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks.jira import JiraCredentials
from flows.ticket_creation.drafts import AUTOMATION, TicketDraft
from flows.ticket_creation.plan import COMMENT, TICKET, LedgerEntry, PlannedDraft
from moltbot.errors import ServiceError
from moltbot.ledger import Claim, Effect, EffectStatus, Ledger
from tasks.jira import BulkFailure, comment_on_issue, create_issues_in_bulk, find_issues

# Labels per dedup search: one search for up to this many drafts; the JQL travels in the URL.
LABELS_PER_SEARCH = 200


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@task(name="find-existing-tickets", cache_policy=NO_CACHE)
def find_existing(
    credentials: JiraCredentials, labels: list[str], *, block_name: str
) -> dict[str, str]:
    """Which dedup labels already mark an issue: one JQL search (per 200 labels).

    Args:
        credentials: the Jira block.
        labels: the drafts' ``moltbot-…`` labels.
        block_name: the block's name for messages.

    Returns:
        Label -> key of the oldest issue carrying it.
    """
    wanted = list(dict.fromkeys(labels))
    found: dict[str, str] = {}
    if not wanted:
        return found
    client = credentials.get_client(block_name=block_name)
    for start in range(0, len(wanted), LABELS_PER_SEARCH):
        chunk = wanted[start : start + LABELS_PER_SEARCH]
        jql = f"labels in ({', '.join(map(_jql_string, chunk))}) ORDER BY created ASC"
        issues = find_issues(
            credentials, jql, fields=("labels",), block_name=block_name, client=client
        )
        for issue in issues:
            for label in issue["fields"].get("labels") or []:
                if label in chunk:
                    found.setdefault(label, issue["key"])
    get_run_logger().info("Dedup search: %d of %d keys have an issue", len(found), len(wanted))
    return found


def _entry(effect: Effect, ledger: Ledger, now: datetime) -> LedgerEntry:
    fresh = effect.status == EffectStatus.PENDING and now - effect.updated_at <= ledger.lease
    return LedgerEntry(effect.status.value, effect.kind, effect.remote_id, fresh)


@task(name="read-ticket-ledger", cache_policy=NO_CACHE)
def read_ledger(drafts: list[TicketDraft]) -> dict[str, LedgerEntry]:
    """The ledger's rows for the drafts' issue and occurrence keys (read only)."""
    keys = dict.fromkeys(k for d in drafts for k in (d.ledger_key, d.occurrence_key))
    entries: dict[str, LedgerEntry] = {}
    now = datetime.now(UTC)
    with Ledger.from_settings() as ledger:
        for key in keys:
            effect = ledger.get(key)
            if effect is not None:
                entries[key] = _entry(effect, ledger, now)
    return entries


def _ensure_done(ledger: Ledger, key: str, *, kind: str, target: str, remote_id: str) -> None:
    """Record `key` as done with `remote_id` whatever its state (the remote effect exists)."""
    effect = ledger.get(key)
    if effect is not None and effect.status == EffectStatus.DONE:
        return
    if effect is None:
        ledger.claim(
            key, automation=AUTOMATION, kind=kind, target=target, flow_run_id=flow_run.get_id()
        )
    ledger.complete(key, remote_id=remote_id)


def _claim(ledger: Ledger, key: str, draft: TicketDraft, kind: str, run_id: str | None) -> Claim:
    return ledger.claim(
        key, automation=AUTOMATION, kind=kind, target=draft.target, flow_run_id=run_id
    )


def _held_elsewhere(draft: TicketDraft, claim: Claim, key: str | None) -> dict[str, Any]:
    """The outcome of a draft whose claim another run finished (`unchanged`) or still holds."""
    done = claim.effect.status == EffectStatus.DONE
    return _outcome(draft, "unchanged" if done else "in_progress", key=key)


def _outcome(draft: TicketDraft, status: str, **details: Any) -> dict[str, Any]:
    return {
        "status": status,
        "draft": draft.id,
        "item": draft.item,
        "dedup_key": draft.dedup_key,
        **details,
    }


@task(name="record-found-tickets", cache_policy=NO_CACHE)
def record_found(found: dict[str, tuple[str, str]], creators: list[PlannedDraft]) -> list[dict]:
    """Record issues that exist in Jira but not as done in the ledger, creating nothing.

    They were created by a run that died before recording them (or, for `creators`, by this
    very occurrence in such a run: it is recorded, not commented on).

    Args:
        found: issue ledger key -> (issue key, ledger target).
        creators: the drafts planned ``record``.

    Returns:
        One ``recovered`` outcome per creator.
    """
    outcomes = []
    with Ledger.from_settings() as ledger:
        for key, (issue_key, target) in found.items():
            _ensure_done(ledger, key, kind=TICKET, target=target, remote_id=issue_key)
        for planned in creators:
            draft = planned.draft
            assert planned.issue_key is not None  # a record action always has its issue
            _ensure_done(
                ledger,
                draft.occurrence_key,
                kind=TICKET,
                target=draft.target,
                remote_id=planned.issue_key,
            )
            outcomes.append(_outcome(draft, "recovered", key=planned.issue_key))
    if outcomes:
        get_run_logger().info("Recorded %d issue(s) created by an interrupted run", len(outcomes))
    return outcomes


def _refusal(failure: BulkFailure) -> str:
    if failure.errors:
        return "; ".join(f"{name}: {message}" for name, message in failure.errors.items())
    return failure.message


@task(name="create-tickets", cache_policy=NO_CACHE)
def create_tickets(
    credentials: JiraCredentials, drafts: list[TicketDraft], *, block_name: str
) -> list[dict]:
    """Create one issue per draft in bulk (50 per request), each claimed in the ledger first.

    The issue's key and the occurrence's key are claimed together, so a crash after Jira
    created the issue leaves both pending: the next run's label search finds the issue and
    records it (see `record_found`) instead of creating or commenting. A draft Jira refuses is
    recorded as failed with Jira's own field error, and the others are created; a failure
    whose outcome is unknown is failed too, and the next run's label search settles it.

    Args:
        credentials: the Jira block.
        drafts: the drafts to create (first occurrences of new dedup keys).
        block_name: the block's name for messages.

    Returns:
        One outcome per draft: ``created`` (with ``key``), ``failed`` (with ``error`` and
        ``transient``), ``in_progress`` (another run holds it) or ``unchanged`` (another run
        created it meanwhile).
    """
    logger = get_run_logger()
    outcomes: list[dict] = []
    claimed: list[TicketDraft] = []
    run_id = flow_run.get_id()
    with Ledger.from_settings() as ledger:
        for draft in drafts:
            claim = _claim(ledger, draft.ledger_key, draft, TICKET, run_id)
            if not claim.acquired:
                outcomes.append(_held_elsewhere(draft, claim, claim.effect.remote_id))
                continue
            _claim(ledger, draft.occurrence_key, draft, TICKET, run_id)
            claimed.append(draft)
        if not claimed:
            return outcomes

        def fail_all(error: str, transient: bool) -> None:
            for draft in claimed:
                for key in (draft.ledger_key, draft.occurrence_key):
                    ledger.fail(key, error)
                outcomes.append(_outcome(draft, "failed", error=error, transient=transient))

        try:
            result = create_issues_in_bulk(
                credentials, [draft.fields for draft in claimed], block_name=block_name
            )
        except ServiceError as failure:
            fail_all(str(failure), failure.transient)
            return outcomes
        except Exception as exc:
            # A bug, not Jira's answer: leave the rows retryable, then surface it.
            fail_all(f"{type(exc).__name__}: {exc}", False)
            raise
        for index, draft in enumerate(claimed):
            key = result.created.get(index)
            if key is not None:
                ledger.complete(draft.ledger_key, remote_id=key)
                ledger.complete(draft.occurrence_key, remote_id=key)
                outcomes.append(_outcome(draft, "created", key=key))
        for failure in result.failures:
            draft = claimed[failure.index]
            error = _refusal(failure)
            for key in (draft.ledger_key, draft.occurrence_key):
                ledger.fail(key, error)
            # Refused fields need a fixed mapping; an unknown outcome needs the next run.
            transient = failure.outcome_unknown or not failure.errors
            outcomes.append(_outcome(draft, "failed", error=error, transient=transient))
    created = sum(outcome["status"] == "created" for outcome in outcomes)
    logger.info("Created %d of %d issue(s)", created, len(claimed))
    for outcome in outcomes:
        if outcome["status"] == "failed":
            logger.error("Not created: %s: %s", outcome["item"], outcome["error"])
    return outcomes


def seen_counts(ledger: Ledger, issue_keys: Iterable[str]) -> dict[str, int]:
    """How many occurrences of each issue key the ledger records as handled (created or
    commented): the ``N times in total`` of the next comment is one more."""
    prefixes = {key: f"{key}:seen:" for key in issue_keys}
    counts = dict.fromkeys(prefixes, 0)
    for effect in ledger.effects(automation=AUTOMATION, status=EffectStatus.DONE):
        for key, prefix in prefixes.items():
            if effect.key.startswith(prefix):
                counts[key] += 1
    return counts


@task(name="comment-on-tickets", cache_policy=NO_CACHE)
def add_comments(
    credentials: JiraCredentials,
    comments: list[PlannedDraft],
    created: dict[str, str],
    *,
    block_name: str,
    body: Callable[[TicketDraft, int], str],
) -> list[dict]:
    """Comment once per recurring occurrence on its issue ("seen again at …, N times in total").

    Each comment is claimed in the ledger under the occurrence's key, so re-running the same
    input adds no comment. N counts the occurrences recorded for the dedup key (the ledger is
    where it is kept), plus this one.

    Args:
        credentials: the Jira block.
        comments: the drafts planned ``comment``, in draft order.
        created: issue ledger key -> key of the issue this run created for it.
        block_name: the block's name for messages.
        body: the comment text for a draft and its N.

    Returns:
        One outcome per draft: ``commented`` (``key``, ``comment_id``, ``seen``), ``failed``,
        ``in_progress`` or ``unchanged``.
    """
    outcomes: list[dict] = []
    if not comments:
        return outcomes
    run_id = flow_run.get_id()
    ordered = sorted(comments, key=lambda planned: planned.draft.occurred_at)
    with Ledger.from_settings() as ledger:
        counts = seen_counts(ledger, {planned.draft.ledger_key for planned in ordered})
        for planned in ordered:
            draft = planned.draft
            issue_key = planned.issue_key or created.get(draft.ledger_key)
            if issue_key is None:
                error = "its issue was not created in this run"
                outcomes.append(_outcome(draft, "failed", error=error, transient=True))
                continue
            claim = _claim(ledger, draft.occurrence_key, draft, COMMENT, run_id)
            if not claim.acquired:
                outcomes.append(_held_elsewhere(draft, claim, issue_key))
                continue
            # An issue that exists was seen at least once, even if an older ledger lost it.
            seen = max(counts[draft.ledger_key], 1) + 1
            try:
                comment = comment_on_issue(
                    credentials, issue_key, body(draft, seen), block_name=block_name
                )
            except ServiceError as failure:
                ledger.fail(draft.occurrence_key, str(failure))
                error = str(failure)
                outcomes.append(
                    _outcome(
                        draft, "failed", key=issue_key, error=error, transient=failure.transient
                    )
                )
                continue
            except Exception as exc:
                ledger.fail(draft.occurrence_key, f"{type(exc).__name__}: {exc}")
                raise
            comment_id = str(comment.get("id"))
            ledger.complete(draft.occurrence_key, remote_id=f"{issue_key}/comment/{comment_id}")
            counts[draft.ledger_key] = seen
            outcomes.append(
                _outcome(draft, "commented", key=issue_key, comment_id=comment_id, seen=seen)
            )
    commented = sum(outcome["status"] == "commented" for outcome in outcomes)
    get_run_logger().info("Commented on %d recurring issue(s)", commented)
    return outcomes


def browse_url(credentials: JiraCredentials, issue_key: str) -> str:
    """The issue's page: ``<site>/browse/OPS-12``."""
    return f"{credentials.server_url.rstrip('/')}/browse/{issue_key}"


def drafts_of(planned: Sequence[PlannedDraft]) -> list[TicketDraft]:
    """The drafts of planned drafts."""
    return [item.draft for item in planned]
