"""The run report every automation returns: its effects in the one vocabulary, its artifacts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from moltbot.effects.model import Outcome
from moltbot.errors import DeliveryFailed

# Failures named in the run's error line; the report lists them all.
FAILURES_QUOTED = 5


class Delivery(Outcome):
    """One message's outcome on one route (`channel`: the route's first channel)."""

    channel: str
    severity: str | None = None


class ArtifactRef(BaseModel):
    """A Prefect artifact the run published (`key` None: on the run page only)."""

    key: str | None
    id: str


class RunReport(BaseModel):
    """What a run did; each automation subclasses it with its own figures.

    `moltbot run --json` prints it; the Prefect result is its JSON form (`as_result`).
    """

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    deliveries: list[Delivery] = []
    # The run's other effects (a Notion page, Jira issues), where the automation reports their
    # outcomes here; a dry run's carry their previews. Left out of the JSON when empty.
    effects: list[Outcome] = Field(default_factory=list, exclude_if=lambda value: not value)
    artifacts: list[ArtifactRef] = []

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        # A report read back from its JSON (`as_result`) carries its computed counts.
        if isinstance(data, dict) and "outcomes" in data:
            data = {key: value for key, value in data.items() if key != "outcomes"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def outcomes(self) -> dict[str, int]:
        """How many deliveries ended in each status."""
        tally: dict[str, int] = {}
        for delivery in self.deliveries:
            tally[delivery.status] = tally.get(delivery.status, 0) + 1
        return tally

    def unsettled(self) -> list[Delivery]:
        """The deliveries that did not reach their route (failed, dead, in doubt, held)."""
        return [delivery for delivery in self.deliveries if not delivery.settled]

    def as_result(self) -> dict[str, Any]:
        """The report as JSON types (the flow's return value and `--json` output)."""
        return self.model_dump(mode="json")


def finish_run(
    report: RunReport, *, other_failures: list[str] | None = None, then: str = ""
) -> dict[str, Any]:
    """The one last step of every run: its JSON result, or the run's failure when an effect is
    not done (exit 1 from the CLI, the result attached and printed by `--json`).

    Args:
        report: the run's report.
        other_failures: failures the automation found outside its deliveries (items), first.
        then: what happens next, appended to the message.

    Raises:
        DeliveryFailed: one line naming at most five failures, then how many more.
    """
    failures = [
        *(other_failures or []),
        *(
            f"{delivery.channel}: {delivery.status}"
            + (f" ({delivery.error})" if delivery.error else "")
            for delivery in report.unsettled()
        ),
    ]
    result = report.as_result()
    if failures:
        listed = "; ".join(failures[:FAILURES_QUOTED])
        unlisted = len(failures) - FAILURES_QUOTED
        more = f"; and {unlisted} more" if unlisted > 0 else ""
        raise DeliveryFailed(f"{len(failures)} failure(s): {listed}{more}{then}", result)
    return result
