"""Message rules: which condition of an automation produces which effect, as declared data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RuleKind = Literal["message", "ticket", "comment", "page", "artifact", "review"]
"""What a rule produces: a message on a route, a Jira issue or comment, a Notion page (effects
the ledger records), or an artifact on the run's page or a review request (which it does not)."""

RULE_ID_PATTERN = r"^[a-z0-9-]+\.[a-z0-9-]+$"
"""`<automation>.<rule>`: readable and stable (ledger rows keep it after the code changes)."""


@dataclass(frozen=True)
class Words:
    """A phrase in every locale moltbot ships (the policy document shows the one asked for)."""

    en: str
    ko: str

    def text(self, locale: str) -> str:
        """The phrase in `locale` (English for a locale without one)."""
        return self.ko if locale == "ko" else self.en


@dataclass(frozen=True)
class Rule:
    """One rule of an automation: a condition and the effect it produces.

    Attributes:
        id: `<automation>.<name>`, e.g. `inventory-alert.out-of-stock`; recorded in the ledger
            with every effect the rule produces, so never renamed lightly.
        condition: when the rule fires, in words.
        dedup: what the effect's idempotency key is made of, in words.
        kind: what it produces.
        route: the severity key of the automation's routes (`default_routes`, `[routes]`) that
            picks its channel chain; None for effects that do not go along a message route.
        severities: the message severities it can have (quiet hours and escalation go by them).
        templates: the template files it renders, first the one quoted in the policy.
        template_package: the package whose `templates/` folder holds them (default: the
            automation's flow package).
        ops_fallback: without a chain of its own (parameter, `[routes]`, registry default) it
            goes along the ops channels (`MOLTBOT_OPS_CHANNELS`), as health's message does.
    """

    id: str
    condition: Words
    dedup: Words
    kind: RuleKind = "message"
    route: str | None = None
    severities: tuple[str, ...] = ("info",)
    templates: tuple[str, ...] = ()
    template_package: str | None = None
    ops_fallback: bool = False

    @property
    def automation(self) -> str:
        """The automation part of the id."""
        return self.id.split(".", 1)[0]


def run_summary_rule(automation: str) -> Rule:
    """`<automation>.run-summary`: the artifact every run leaves on its page (the same rule in
    every automation that renders `run_summary.md.j2`)."""
    return Rule(
        f"{automation}.run-summary",
        condition=Words(
            "every run: what it found and what became of each effect, on the run's page",
            "매 실행: 찾은 것과 각 작업의 결과를 실행 페이지에",
        ),
        dedup=Words("one per run (a Prefect artifact)", "실행마다 하나 (Prefect 아티팩트)"),
        kind="artifact",
        templates=("run_summary.md.j2",),
    )
