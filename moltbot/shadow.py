"""Shadow mode: replay recorded run inputs through the current code and diff what it would send."""

from __future__ import annotations

import difflib
import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
from sqlalchemy import select

from moltbot.errors import InputError
from moltbot.masking import mask_text
from moltbot.messages import Message
from moltbot.registry import Automation
from moltbot.state.ledger import EffectStatus, Ledger, effects_table
from moltbot.state.recorded_inputs import RecordedInputs, RecordedRun
from moltbot.templating import render_template

Change = Literal["added", "removed", "changed", "same"]
CHANGES: tuple[Change, ...] = ("added", "removed", "changed", "same")
TEMPLATES = Path(__file__).parent / "shadow_templates"


@dataclass(frozen=True)
class ShadowEffect:
    """One effect a run sends (or would send), as shadow mode compares it.

    Attributes:
        key: its logical idempotency key (a message's key without the channel, a Jira issue's
            or comment's ledger key): the same logical item keeps it across wording changes.
        kind: ``message``, ``ticket`` or ``comment``.
        target: where it goes (a severity, a Jira project).
        text: what the recipient reads, masked (`moltbot.masking.mask_text`).
    """

    key: str
    kind: str
    target: str
    text: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready, as `recorded_inputs.effects` keeps it."""
        return {"key": self.key, "kind": self.kind, "target": self.target, "text": self.text}

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> ShadowEffect:
        """The effect `as_dict` wrote."""
        return cls(str(record["key"]), str(record["kind"]), str(record["target"]), record["text"])


def effect(key: str, kind: str, target: str, text: str) -> ShadowEffect:
    """A `ShadowEffect` whose text is masked, as anything shadow mode stores or shows."""
    return ShadowEffect(key, kind, target, mask_text(text))


def message_effect(message: Message, target: str) -> ShadowEffect:
    """A message as its readers see it: the title, the text (e-mail, files) and chat's text."""
    parts = [message.title, message.text]
    chat = message.chat_text()
    if chat != message.text:
        parts.append(chat)
    return effect(message.key, "message", target, "\n\n".join(part.strip() for part in parts))


def fields_text(fields: Mapping[str, Any]) -> str:
    """A Jira issue's fields as lines a diff can show: `name: value`, long texts on their own."""
    lines: list[str] = []
    for name in sorted(fields):
        value = fields[name]
        if isinstance(value, str) and "\n" in value:
            lines.extend([f"{name}:", *value.rstrip("\n").splitlines()])
        else:
            lines.append(f"{name}: {json.dumps(value, ensure_ascii=False, sort_keys=True)}")
    return "\n".join(lines)


# A replayer turns one recorded snapshot into the effects the current code would send.
Replayer = Callable[[RecordedRun], list[ShadowEffect]]


class InputsGone(InputError):
    """A recorded run's input is no longer there to replay (e.g. its inbox entries were pruned)."""


@dataclass(frozen=True)
class EffectDiff:
    """One effect's fate between what a run sent and what the current code would send."""

    key: str
    kind: str
    target: str
    change: Change
    diff: str = ""

    def as_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return {
            "key": self.key,
            "kind": self.kind,
            "target": self.target,
            "change": self.change,
            "diff": self.diff,
        }


@dataclass(frozen=True)
class RunShadow:
    """One recorded run replayed: its effects compared, or why it could not be replayed."""

    flow_run_id: str
    recorded_at: datetime
    effects: list[EffectDiff] = field(default_factory=list)
    problem: str | None = None
    gone: bool = False

    def counts(self) -> dict[str, int]:
        """How many effects were added, removed, changed and the same."""
        return {change: sum(1 for e in self.effects if e.change == change) for change in CHANGES}

    @property
    def differs(self) -> bool:
        """True when something would be sent differently."""
        return any(e.change != "same" for e in self.effects)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "flow_run_id": self.flow_run_id,
            "recorded_at": self.recorded_at.isoformat(timespec="seconds"),
            "counts": self.counts(),
            "effects": [e.as_dict() for e in self.effects],
            "problem": self.problem,
            "inputs_gone": self.gone,
        }


@dataclass(frozen=True)
class ShadowReport:
    """Every recorded run of an automation since a moment, replayed."""

    automation: str
    since: datetime
    runs: list[RunShadow]

    @property
    def differs(self) -> bool:
        """True when some run would send something differently (CI's exit 1)."""
        return any(run.differs for run in self.runs)

    @property
    def unreplayed(self) -> bool:
        """True when some run could not be replayed (its inputs are gone, a template fails)."""
        return any(run.problem is not None for run in self.runs)

    def counts(self) -> dict[str, int]:
        """The effects of all runs by change."""
        return {change: sum(run.counts()[change] for run in self.runs) for change in CHANGES}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the `--json` document)."""
        return {
            "automation": self.automation,
            "since": self.since.isoformat(timespec="seconds"),
            "differs": self.differs,
            "unreplayed": self.unreplayed,
            "counts": self.counts(),
            "runs": [run.as_dict() for run in self.runs],
        }


def text_diff(before: str, after: str, key: str) -> str:
    """A unified diff of a sent text (`sent`) and the text the current code renders (`now`)."""
    return "\n".join(
        difflib.unified_diff(
            before.splitlines(),
            after.splitlines(),
            fromfile=f"sent {key}",
            tofile=f"now {key}",
            lineterm="",
        )
    )


def compare(sent: Sequence[ShadowEffect], would: Sequence[ShadowEffect]) -> list[EffectDiff]:
    """Classify each effect by its key: only sent (removed), only now (added), both (changed
    or same); in the order sent, then the added ones in the order the current code makes them."""
    now = {e.key: e for e in would}
    before = {e.key: e for e in sent}
    diffs: list[EffectDiff] = []
    for key, old in before.items():
        new = now.get(key)
        if new is None:
            diffs.append(EffectDiff(key, old.kind, old.target, "removed"))
        elif new.text == old.text:
            diffs.append(EffectDiff(key, old.kind, old.target, "same"))
        else:
            diffs.append(
                EffectDiff(key, old.kind, old.target, "changed", text_diff(old.text, new.text, key))
            )
    diffs.extend(
        EffectDiff(key, new.kind, new.target, "added")
        for key, new in now.items()
        if key not in before
    )
    return diffs


def sent_effects(recorded: Iterable[Mapping[str, Any]], done: set[str]) -> list[ShadowEffect]:
    """The recorded effects the ledger says their run did: its key is done, or (a message,
    keyed per channel in the ledger) some `<key>:<channel>` is."""
    effects = [ShadowEffect.of(record) for record in recorded]
    return [e for e in effects if e.key in done or any(key.startswith(f"{e.key}:") for key in done)]


def done_keys(ledger: Ledger, automation: str, flow_run_id: str) -> set[str]:
    """The ledger keys `flow_run_id` of `automation` did (status done)."""
    table = effects_table
    statement = select(table.c.key).where(
        table.c.automation == automation,
        table.c.flow_run_id == flow_run_id,
        table.c.status == EffectStatus.DONE.value,
    )
    with ledger.engine.connect() as conn:
        return set(conn.execute(statement).scalars())


def replayer_of(automation: Automation) -> Replayer:
    """The automation's replay function.

    Raises:
        InputError: the automation keeps no inputs for shadow mode.
    """
    if automation.shadow_ref is None:
        raise InputError(
            f"{automation.name} keeps no run inputs, so shadow mode cannot replay it "
            f"(it can: {', '.join(shadow_names())})"
        )
    module_name, attribute = automation.shadow_ref.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def shadow_names() -> list[str]:
    """The automations shadow mode can replay."""
    from moltbot.registry import automations

    return [automation.name for automation in automations() if automation.shadow_ref]


def shadow(
    automation: Automation, ledger: Ledger, *, since: datetime, replay: Replayer | None = None
) -> ShadowReport:
    """Replay every run of `automation` recorded since `since` as a dry run and compare.

    Nothing is sent, claimed or recorded: the replayer runs the flow's plan and render
    functions only, and the ledger is only read (the effects a run did).
    """
    replay = replay or replayer_of(automation)
    runs: list[RunShadow] = []
    for run in RecordedInputs(ledger).runs(automation.name, since):
        try:
            would = replay(run)
        except (InputError, jinja2.TemplateError) as exc:
            # A changed template that no longer renders is what CI must hear about, as one
            # line per run (the message names the template, never the data).
            problem = mask_text(str(exc))
            gone = isinstance(exc, InputsGone)
            runs.append(RunShadow(run.flow_run_id, run.recorded_at, problem=problem, gone=gone))
            continue
        sent = sent_effects(run.effects, done_keys(ledger, automation.name, run.flow_run_id))
        runs.append(RunShadow(run.flow_run_id, run.recorded_at, compare(sent, would)))
    return ShadowReport(automation.name, since, runs)


def render_html(report: ShadowReport, locale: str) -> str:
    """The report as one HTML page, every text escaped (the template autoescapes)."""
    return render_template(
        TEMPLATES, locale, "report.html.j2", report=report.as_dict(), changes=CHANGES
    )
