"""Reconcile's checks: what should have produced an effect against the effects recorded (pure)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

AUTOMATION = "reconcile"

# The automations whose sources reconcile reads, and the effect kinds it knows by heart.
FORM_DIGEST = "form-digest"
INVENTORY_ALERT = "inventory-alert"
PAYMENT_FAILURES = "payment-failures"

# The first data row of a Forms response sheet: row 1 is the header.
FIRST_DATA_ROW = 2

# How far from the alerting run's start its alert may have been recorded: a run stamps the
# states it saves with its own start, and its deliveries come after (normally seconds later).
# A run that crashed after delivering and was re-run finds its alert done by the first run,
# before its own start: that is looked for as far back.
ALERT_MATCH_WINDOW = timedelta(hours=1)

REASONS: dict[str, tuple[str, str]] = {
    "missing_digest": (
        "no ledger row for the rows' digest",
        "이 행들의 요약에 대한 원장 기록이 없음",
    ),
    "window_held": (
        "rows held by a digest that did not finish within the grace period",
        "유예 시간 안에 끝나지 않은 요약이 행을 붙잡고 있음",
    ),
    "missing_alert": (
        "stock transition saved but no alert recorded",
        "재고 상태 변화는 저장됐지만 알림 기록이 없음",
    ),
    "missing_ticket": (
        "payment failures above the threshold but no ticket recorded",
        "결제 실패가 기준을 넘었지만 티켓 기록이 없음",
    ),
    "inbox_pending": (
        "inbox entry pending past its deadline",
        "수신함 항목이 기한이 지나도록 대기 중",
    ),
    "inbox_failed": (
        "inbox entry failed: no run was created",
        "수신함 항목 실패: 실행이 만들어지지 않음",
    ),
    "run_missing": (
        "inbox entry dispatched to a flow run that does not exist",
        "수신함 항목이 존재하지 않는 플로 실행으로 전달됨",
    ),
    "run_not_started": (
        "inbox entry dispatched to a run that never started",
        "수신함 항목이 시작되지 않은 실행으로 전달됨",
    ),
    "run_ended": (
        "its run ended without completing",
        "실행이 완료되지 못하고 끝남",
    ),
    "no_effects": (
        "its run completed without recording any effect",
        "실행이 완료됐지만 기록된 작업이 없음",
    ),
    "dead": (
        "effect dead-lettered (every destination failed)",
        "작업이 데드 레터로 처리됨(모든 대상 실패)",
    ),
    "failed": ("effect failed (waiting for a retry)", "작업 실패(재시도 대기 중)"),
    "in_doubt": (
        "effect in doubt: a person must check it",
        "작업 결과 불확실: 사람이 확인해야 함",
    ),
    "stale_pending": (
        "effect pending past the grace period",
        "유예 시간이 지나도록 작업이 진행 중",
    ),
    "held_past_quiet_hours": (
        "message still held after its quiet hours ended (is the on-call automation running?)",
        "방해 금지 시간이 끝났는데도 메시지가 보류 중(on-call 자동화가 실행 중인지 확인)",
    ),
}
"""Every reason an omission can have: code -> (English, Korean)."""

ITEM_KINDS: dict[str, tuple[str, str]] = {
    "rows": ("sheet rows {}", "시트 {}행"),
    "sku": ("SKU {}", "SKU {}"),
    "inbox": ("inbox entry {}", "수신함 항목 {}"),
    "customer": ("customer #{}", "고객 #{}"),
    "effect": ("{}", "{}"),
}
"""How omissions name their items: kind -> (English, Korean) with the item in place of {}."""

# The worst first: an item with several bad effects is reported with the worst one.
_EFFECT_PROBLEMS = ("dead", "in_doubt", "failed", "stale_pending", "held_past_quiet_hours")

# Prefect state types: a run that has begun, and one that is over without completing.
_ENDED_BADLY = {"FAILED", "CRASHED", "CANCELLED"}
_NOT_STARTED = {"SCHEDULED", "PENDING"}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class EffectRecord:
    """One ledger row as reconcile sees it (no payload, no error text)."""

    key: str
    automation: str
    status: str
    created_at: datetime
    updated_at: datetime
    flow_run_id: str | None = None
    route: str | None = None
    # A message held for quiet hours: when they ended.
    due_at: datetime | None = None


@dataclass(frozen=True)
class StreamMark:
    """A form-digest watermark: the last sheet row committed, and a held window's last row."""

    stream: str
    position_row: int | None
    pending_row: int | None
    updated_at: datetime


@dataclass(frozen=True)
class AlertedItem:
    """An inventory-alert item state that records an alert (`last_alerted_at` set)."""

    sku: str
    state: str
    since: datetime
    last_alerted_at: datetime


@dataclass(frozen=True)
class RoutedEntry:
    """One webhook inbox entry and one deployment it is routed to.

    Attributes:
        entry_id: the inbox id.
        automation: the flow (automation) of the deployment.
        deployment: `<flow>/<deployment>`.
        status: the entry's status (pending, dispatched, failed).
        received_at: when the gateway committed it.
        updated_at: when it last changed (for a dispatched entry: when it was dispatched).
        flow_run_id: the deployment's flow run, once dispatched.
    """

    entry_id: str
    automation: str
    deployment: str
    status: str
    received_at: datetime
    updated_at: datetime
    flow_run_id: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """What the Prefect API says about a flow run."""

    id: str
    state_type: str
    state_name: str
    started: bool


@dataclass(frozen=True)
class ExpectedTicket:
    """A customer's day with failures at or above the threshold: a ticket must exist.

    Attributes:
        customer: a hash of the customer key (never the key itself: it may be an e-mail).
        day: the local day (ISO date).
        key: the ticket's ledger key up to its Jira project (``…:jira:``).
        failures: how many failures reached the threshold.
    """

    customer: str
    day: str
    key: str
    failures: int


@dataclass(frozen=True)
class Inputs:
    """Everything the checks compare, loaded in bulk.

    Attributes:
        effects: the ledger rows updated within the period, and every row of the inbox runs.
        form_effects: every form-digest row of the watermarked streams (their row coverage).
        marks: form-digest watermarks.
        alerted: inventory-alert items alerted within the period.
        routed: inbox entries (per deployment) within the period, and every pending one.
        runs: the Prefect flow runs of the dispatched entries, by id.
        tickets: customer days with payment failures at or above the threshold, or None when
            that source is not available.
        ticket_effects: the ledger rows under the tickets' key prefixes, whatever their age.
        stored_entries: inbox entries whose event an automation keeps as its record (a
            payment-failures run stores each payment event; a ticket or an alert may follow
            only later, from other events), so a completed run of theirs without a ledger row
            is not an omission.
    """

    effects: Sequence[EffectRecord] = ()
    form_effects: Sequence[EffectRecord] = ()
    marks: Sequence[StreamMark] = ()
    alerted: Sequence[AlertedItem] = ()
    routed: Sequence[RoutedEntry] = ()
    runs: Mapping[str, RunRecord] = field(default_factory=dict)
    tickets: Sequence[ExpectedTicket] | None = None
    ticket_effects: Sequence[EffectRecord] = ()
    stored_entries: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Omission:
    """Something that should have produced an effect and did not (or not yet, past its grace).

    Attributes:
        automation: whose effect is missing.
        kind: what the item is (`ITEM_KINDS`).
        item: its neutral identifier (sheet rows `2–25`, an inbox id, a SKU, a customer hash
            and day, a logical effect key); never personal data.
        key: the expected effect's ledger key, or its key prefix.
        reason: a code of `REASONS`.
        at: when the effect was due (the alert's run, the entry's arrival), if known.
        detail: a neutral addition (a run's state name).
    """

    automation: str
    kind: str
    item: str
    key: str
    reason: str
    at: datetime | None = None
    detail: str | None = None

    @property
    def id(self) -> str:
        """A stable short id: the same omission found again has the same id."""
        moment = self.at.isoformat() if self.at is not None else ""
        parts = (self.automation, self.kind, self.item, self.key, self.reason, moment)
        text = "\x1f".join(parts)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    def item_text(self, locale: str) -> str:
        """The item in words, in `locale` (`sheet rows 2–25`, `시트 2–25행`)."""
        english, korean = ITEM_KINDS[self.kind]
        return (korean if locale == "ko" else english).format(self.item)

    def reason_text(self, locale: str) -> str:
        """The reason in words, in `locale`."""
        english, korean = REASONS[self.reason]
        return korean if locale == "ko" else english

    def as_dict(self, locale: str = "en") -> dict[str, object]:
        """The omission as JSON types, its reason in words too."""
        return {
            "id": self.id,
            "automation": self.automation,
            "kind": self.kind,
            "item": self.item,
            "item_text": self.item_text(locale),
            "key": self.key,
            "reason": self.reason,
            "reason_text": self.reason_text(locale),
            "at": self.at.isoformat() if self.at is not None else None,
            "detail": self.detail,
        }


@dataclass
class CheckResult:
    """What one check found: its omissions, how many items it expected per automation, and the
    effect keys it looked at (the catch-all check leaves those alone)."""

    omissions: list[Omission] = field(default_factory=list)
    expected: Counter[str] = field(default_factory=Counter)
    accounted: set[str] = field(default_factory=set)

    def merge(self, other: CheckResult) -> None:
        """Add `other`'s findings to these."""
        self.omissions.extend(other.omissions)
        self.expected.update(other.expected)
        self.accounted |= other.accounted


@dataclass(frozen=True)
class Rate:
    """One automation's figures: items expected, omissions, and their ratio."""

    expected: int
    omissions: int

    @property
    def rate(self) -> float:
        """Omissions / expected (0 when nothing was expected)."""
        return round(self.omissions / self.expected, 4) if self.expected else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """The figures as JSON types."""
        return {"expected": self.expected, "omissions": self.omissions, "rate": self.rate}


@dataclass(frozen=True)
class Reconciliation:
    """Every omission, and the omission rate per automation."""

    omissions: list[Omission]
    rates: dict[str, Rate]


# --------------------------------------------------------------------------- effect states


def effect_problem(effect: EffectRecord, *, now: datetime, grace: timedelta) -> str | None:
    """The reason `effect` counts as an omission, or None (done, pending within the grace, or
    held for quiet hours that ended less than the grace ago)."""
    if effect.status in ("dead", "failed", "in_doubt"):
        return effect.status
    if effect.status == "pending" and now - effect.updated_at > grace:
        return "stale_pending"
    if effect.status == "queued" and effect.due_at is not None and now - effect.due_at > grace:
        return "held_past_quiet_hours"
    return None


def worst_problem(
    effects: Iterable[EffectRecord], *, now: datetime, grace: timedelta
) -> tuple[str, EffectRecord] | None:
    """The worst problem among `effects` and the effect that has it, or None."""
    found = [
        (problem, effect)
        for effect in effects
        if (problem := effect_problem(effect, now=now, grace=grace)) is not None
    ]
    if not found:
        return None
    return min(found, key=lambda pair: (_EFFECT_PROBLEMS.index(pair[0]), pair[1].key))


def logical_item(key: str, route: str | None) -> str:
    """A ledger key without its destination (`…:slack-ops`, `…:notion`): the logical item.

    Mirrors `moltbot.retention.logical_item`, here without I/O so checks stay pure.
    """
    links = json.loads(route) if route else []
    if links and key.endswith(f":{links[0]}"):
        return key[: -len(links[0]) - 1]
    return key.rpartition(":")[0]


# --------------------------------------------------------------------------- form-digest

_WINDOW = re.compile(r"^(?P<first>\d+)-(?P<last>\d+):(?P<fingerprint>[0-9a-f]{12})(?::.*)?$")


def rows_label(first: int, last: int) -> str:
    """`2–25` (or `7`): how omissions name sheet rows."""
    return str(first) if first == last else f"{first}–{last}"


def check_form_rows(
    marks: Sequence[StreamMark],
    form_effects: Sequence[EffectRecord],
    *,
    now: datetime,
    since: datetime,
    grace: timedelta,
) -> CheckResult:
    """Rows the watermark says were digested must be covered by a digest whose effects are done.

    Per stream (``<spreadsheet id>/<worksheet>``): each digest window recorded in the ledger
    (key ``form-digest:<stream>:<first>-<last>:<fingerprint>[:<destination>]``) with a row
    updated since `since` is one expected item, an omission when one of its effects is dead,
    failed, in doubt or pending past `grace`. Sheet rows up to the committed position that no
    recorded window covers are omissions too (one per gap: its rows' digest left no ledger
    row), counted from the last row of the windows older than the period (from the first data
    row when there are none). A window held (planned, not committed) for longer than `grace`
    is one more.

    From the ledger alone, a destination whose row was deleted while the window's other rows
    remain cannot be told from a route that never had it: windows count as covered by any row.
    """
    result = CheckResult()
    for mark in marks:
        prefix = f"{FORM_DIGEST}:{mark.stream}:"
        windows: dict[tuple[int, int, str], list[EffectRecord]] = {}
        for effect in form_effects:
            if not effect.key.startswith(prefix):
                continue
            match = _WINDOW.match(effect.key[len(prefix) :])
            if match is None:
                continue  # an "empty" note, keyed by its run: no rows
            bounds = (int(match["first"]), int(match["last"]), match["fingerprint"])
            windows.setdefault(bounds, []).append(effect)
        recent = {
            bounds: rows
            for bounds, rows in windows.items()
            if any(row.updated_at >= since for row in rows)
        }
        older = [bounds for bounds in windows if bounds not in recent]
        for (first, last, _fingerprint), rows in sorted(recent.items()):
            result.expected[FORM_DIGEST] += 1
            result.accounted.update(row.key for row in rows)
            problem = worst_problem(rows, now=now, grace=grace)
            if problem is not None:
                reason, effect = problem
                result.omissions.append(
                    Omission(FORM_DIGEST, "rows", rows_label(first, last), effect.key, reason)
                )
        in_scope = bool(recent) or mark.updated_at >= since
        if mark.position_row is not None and in_scope:
            baseline = max((last for _, last, _ in older), default=FIRST_DATA_ROW - 1)
            covered = sorted((first, last) for first, last, _ in windows)
            for first, last in _gaps(covered, start=baseline + 1, end=mark.position_row):
                result.expected[FORM_DIGEST] += 1
                result.omissions.append(
                    Omission(
                        FORM_DIGEST,
                        "rows",
                        rows_label(first, last),
                        f"{prefix}{first}-{last}:",
                        "missing_digest",
                    )
                )
        if mark.pending_row is not None and now - mark.updated_at > grace:
            first = (mark.position_row or FIRST_DATA_ROW - 1) + 1
            result.expected[FORM_DIGEST] += 1
            result.omissions.append(
                Omission(
                    FORM_DIGEST,
                    "rows",
                    rows_label(first, mark.pending_row),
                    f"{prefix}{first}-{mark.pending_row}:",
                    "window_held",
                    at=mark.updated_at,
                )
            )
    return result


def _gaps(covered: list[tuple[int, int]], *, start: int, end: int) -> list[tuple[int, int]]:
    """The ranges of rows in `start..end` that none of the sorted `covered` ranges holds."""
    gaps: list[tuple[int, int]] = []
    cursor = start
    for first, last in covered:
        if last < cursor:
            continue
        if first > cursor:
            gaps.append((cursor, min(first - 1, end)))
        cursor = max(cursor, last + 1)
        if cursor > end:
            break
    if cursor <= end:
        gaps.append((cursor, end))
    return [(first, last) for first, last in gaps if first <= last]


# --------------------------------------------------------------------------- inventory-alert


def alert_severities(item: AlertedItem) -> tuple[str, ...]:
    """The message(s) an item's last alert can have been in, from what its state row says.

    A state entered at the alert's moment is the transition alerted (`low`, `out`, `ok` ->
    recovered); an item still out since before it was reminded; an item now low since after its
    alert went out -> low silently, so its alert said out (or reminded it).
    """
    entered = item.since == item.last_alerted_at
    if item.state == "out":
        return ("out",) if entered else ("reminder",)
    if item.state == "low":
        return ("low",) if entered else ("out", "reminder")
    if item.state == "ok":
        return ("recovered",)
    return ("out", "low", "recovered", "reminder")


def check_stock_alerts(
    alerted: Sequence[AlertedItem],
    effects: Sequence[EffectRecord],
    *,
    now: datetime,
    grace: timedelta,
) -> CheckResult:
    """Every item state that records an alert within the period needs that alert recorded.

    The items one run alerted share its start as `last_alerted_at`; the run's message for a
    severity has key ``inventory-alert:<severity>:<digest>`` (plus the route's channel) and is
    recorded at or after that moment. Per item: the message of a matching severity recorded
    nearest after its alert moment (within `ALERT_MATCH_WINDOW`, else the nearest before it:
    a re-run after a crash finds the first run's message done), and an omission when there is
    none, or when one of its rows is dead, failed, in doubt or pending past `grace`.
    """
    result = CheckResult()
    messages: dict[str, list[EffectRecord]] = {}
    for effect in effects:
        if effect.automation == INVENTORY_ALERT and effect.key.startswith(f"{INVENTORY_ALERT}:"):
            messages.setdefault(logical_item(effect.key, effect.route), []).append(effect)
    first_recorded = {
        message: min(row.created_at for row in rows) for message, rows in messages.items()
    }
    for item in sorted(alerted, key=lambda item: (item.last_alerted_at, item.sku)):
        severities = alert_severities(item)
        candidates = [
            message
            for message in messages
            if message.split(":", 2)[1] in severities
            and abs(first_recorded[message] - item.last_alerted_at) <= ALERT_MATCH_WINDOW
        ]
        result.expected[INVENTORY_ALERT] += 1
        if not candidates:
            prefix = (
                f"{INVENTORY_ALERT}:{severities[0]}:"
                if len(severities) == 1
                else (f"{INVENTORY_ALERT}:")
            )
            result.omissions.append(
                Omission(
                    INVENTORY_ALERT,
                    "sku",
                    item.sku,
                    prefix,
                    "missing_alert",
                    at=item.last_alerted_at,
                )
            )
            continue
        after = [m for m in candidates if first_recorded[m] >= item.last_alerted_at]
        chosen = (
            min(after, key=lambda m: first_recorded[m])
            if after
            else max(candidates, key=lambda m: first_recorded[m])
        )
        result.accounted.update(row.key for row in messages[chosen])
        problem = worst_problem(messages[chosen], now=now, grace=grace)
        if problem is not None:
            reason, effect = problem
            result.omissions.append(
                Omission(
                    INVENTORY_ALERT, "sku", item.sku, effect.key, reason, at=item.last_alerted_at
                )
            )
    return result


# --------------------------------------------------------------------------- webhook inbox


def check_inbox(
    routed: Sequence[RoutedEntry],
    runs: Mapping[str, RunRecord],
    effects: Sequence[EffectRecord],
    *,
    now: datetime,
    grace: timedelta,
    stored_entries: frozenset[str] = frozenset(),
) -> CheckResult:
    """Each inbox entry routed to a deployment needs a run that started and recorded its effects.

    Pending past `grace` since it arrived, failed (the dispatcher gave up), dispatched to a run
    the Prefect API does not know, to one that has not started `grace` after the dispatch, to
    one that ended failed, crashed or cancelled, or that completed without any ledger row of its
    own, or with a row that is dead, failed, in doubt or pending past `grace`: each an omission
    of the deployment's automation. A run still running (or paused for a review) is in flight.
    The expected key is the entry's Prefect idempotency key, ``<inbox id>:<deployment>``.
    """
    result = CheckResult()
    by_run: dict[str, list[EffectRecord]] = {}
    for effect in effects:
        if effect.flow_run_id:
            by_run.setdefault(effect.flow_run_id, []).append(effect)
    for entry in sorted(routed, key=lambda entry: (entry.received_at, entry.entry_id)):
        result.expected[entry.automation] += 1
        recorded = by_run.get(entry.flow_run_id, []) if entry.flow_run_id else []
        result.accounted.update(row.key for row in recorded)
        found = _inbox_problem(
            entry, runs, recorded, now=now, grace=grace, stored=entry.entry_id in stored_entries
        )
        if found is not None:
            reason, key, detail = found
            result.omissions.append(
                Omission(
                    entry.automation,
                    "inbox",
                    entry.entry_id,
                    key,
                    reason,
                    at=entry.received_at,
                    detail=detail,
                )
            )
    return result


def _inbox_problem(
    entry: RoutedEntry,
    runs: Mapping[str, RunRecord],
    recorded: Sequence[EffectRecord],
    *,
    now: datetime,
    grace: timedelta,
    stored: bool = False,
) -> tuple[str, str, str | None] | None:
    """(reason, expected key, detail) of an entry's omission, or None; `stored`: the run kept
    the entry's event as its record (its effects may come later, from other events)."""
    run_key = f"{entry.entry_id}:{entry.deployment}"
    if entry.status == "pending":
        return ("inbox_pending", run_key, None) if now - entry.received_at > grace else None
    if entry.status == "failed":
        return "inbox_failed", run_key, None
    if entry.status != "dispatched" or entry.flow_run_id is None:
        return None
    run = runs.get(entry.flow_run_id)
    if run is None:
        return "run_missing", run_key, entry.flow_run_id
    if not run.started:
        if run.state_type not in _NOT_STARTED or now - entry.updated_at > grace:
            return "run_not_started", run_key, run.state_name
        return None
    if run.state_type in _ENDED_BADLY:
        return "run_ended", run_key, run.state_name
    if run.state_type != "COMPLETED":
        return None  # running, or paused for a review: in flight
    if not recorded:
        return None if stored else ("no_effects", run_key, entry.flow_run_id)
    problem = worst_problem(recorded, now=now, grace=grace)
    if problem is None:
        return None
    reason, effect = problem
    return reason, effect.key, run.state_name


# --------------------------------------------------------------------------- payment failures


def check_payment_tickets(
    tickets: Sequence[ExpectedTicket],
    effects: Sequence[EffectRecord],
    *,
    now: datetime,
    grace: timedelta,
) -> CheckResult:
    """Each customer day at or above the failure threshold needs its ticket recorded and done.

    A ticket's key is known up to its Jira project (``…:jira:<project>``), so `key` is a prefix:
    the issue's row is the one the prefix and a project name make (its occurrence rows,
    ``…:seen:<occurrence>``, are not the issue).
    """
    result = CheckResult()
    for ticket in sorted(tickets, key=lambda ticket: (ticket.day, ticket.customer)):
        result.expected[PAYMENT_FAILURES] += 1
        item = f"{ticket.customer} · {ticket.day}"
        issues = [
            effect
            for effect in effects
            if effect.key.startswith(ticket.key) and ":" not in effect.key[len(ticket.key) :]
        ]
        result.accounted.update(effect.key for effect in issues)
        if not issues:
            result.omissions.append(
                Omission(PAYMENT_FAILURES, "customer", item, ticket.key, "missing_ticket")
            )
            continue
        problem = worst_problem(issues, now=now, grace=grace)
        if problem is not None:
            reason, effect = problem
            result.omissions.append(
                Omission(PAYMENT_FAILURES, "customer", item, effect.key, reason)
            )
    return result


# --------------------------------------------------------------------------- everything else


def check_recorded_effects(
    effects: Sequence[EffectRecord],
    *,
    accounted: set[str],
    now: datetime,
    grace: timedelta,
) -> CheckResult:
    """Every other effect recorded within the period: one item per logical item (a message on
    all its routes), an omission when a row of it is dead, failed, in doubt or pending past
    `grace`. Reconcile's own alerts are left out: a dead alert about omissions would otherwise
    become a new omission, alerted again, every run."""
    result = CheckResult()
    items: dict[tuple[str, str], list[EffectRecord]] = {}
    for effect in effects:
        if effect.key in accounted or effect.automation == AUTOMATION:
            continue
        items.setdefault((effect.automation, logical_item(effect.key, effect.route)), []).append(
            effect
        )
    for (automation, logical), rows in sorted(items.items()):
        result.expected[automation] += 1
        result.accounted.update(row.key for row in rows)
        problem = worst_problem(rows, now=now, grace=grace)
        if problem is not None:
            reason, effect = problem
            result.omissions.append(Omission(automation, "effect", logical, effect.key, reason))
    return result


# --------------------------------------------------------------------------- all of it


def reconcile(
    inputs: Inputs,
    *,
    now: datetime,
    since: datetime,
    grace: timedelta,
    automations: Sequence[str] | None = None,
) -> Reconciliation:
    """Run every check over `inputs`; the omissions (oldest first) and the rate per automation.

    Args:
        inputs: what should have produced effects and the effects recorded.
        now: the moment of the check.
        since: the start of the period looked at.
        grace: how long a pending effect, inbox entry, unstarted run or held window is left
            alone before it counts as an omission.
        automations: only these automations' omissions and rates (None: all).
    """
    total = CheckResult()
    total.merge(
        check_form_rows(inputs.marks, inputs.form_effects, now=now, since=since, grace=grace)
    )
    total.merge(check_stock_alerts(inputs.alerted, inputs.effects, now=now, grace=grace))
    total.merge(
        check_inbox(
            inputs.routed,
            inputs.runs,
            inputs.effects,
            now=now,
            grace=grace,
            stored_entries=inputs.stored_entries,
        )
    )
    if inputs.tickets is not None:
        total.merge(
            check_payment_tickets(inputs.tickets, inputs.ticket_effects, now=now, grace=grace)
        )
    total.merge(
        check_recorded_effects(inputs.effects, accounted=total.accounted, now=now, grace=grace)
    )
    wanted = None if automations is None else set(automations)
    omissions = [
        omission for omission in total.omissions if wanted is None or omission.automation in wanted
    ]
    omissions.sort(key=lambda o: (o.automation, o.at is None, o.at or now, o.item, o.key))
    found = Counter(omission.automation for omission in omissions)
    rates = {
        automation: Rate(expected=expected, omissions=found[automation])
        for automation, expected in sorted(total.expected.items())
        if wanted is None or automation in wanted
    }
    return Reconciliation(omissions=omissions, rates=rates)


def new_omissions(omissions: Sequence[Omission], known: Iterable[str]) -> list[Omission]:
    """The omissions whose id is not among the `known` ids (those alerted before)."""
    seen = set(known)
    return [omission for omission in omissions if omission.id not in seen]


def alert_key(omissions: Sequence[Omission]) -> str:
    """The idempotency key of the alert about `omissions`: a digest of their sorted ids, so a
    re-run that finds the same new omissions (its state not saved yet) rebuilds it."""
    ids = "\n".join(sorted(omission.id for omission in omissions))
    return f"{AUTOMATION}:omissions:{hashlib.sha256(ids.encode('utf-8')).hexdigest()[:24]}"
