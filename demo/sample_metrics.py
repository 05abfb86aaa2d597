"""A week of demo-like metrics rows, for the README's chart (`python -m demo.sample_metrics`)."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from moltbot.metrics import EffectRow, MetricsInput, MetricsReport, RunRow, compute

# Runs a week, the share of them that fail, effects per run, hours a run saves.
_PROFILE = {
    "daily-report": (7, 0.0, 3, 0.5),
    "inventory-alert": (336, 0.01, 0.2, 0.05),
    "form-digest": (168, 0.02, 0.5, 0.1),
    "ticket-creation": (41, 0.05, 1, 0.25),
    "service-health": (10080, 0.001, 0.002, None),
    "payment-failures": (23, 0.0, 1, 0.2),
    "reconcile": (168, 0.0, 0.05, None),
}


def sample_report(now: datetime, *, seed: int = 18) -> MetricsReport:
    """The figures of a made-up week shaped like the demo's automations (seeded: the same
    chart every time)."""
    chance = random.Random(seed)
    since = now - timedelta(days=7)
    data = MetricsInput(since=since, until=now)
    for name, (runs, failing, effects, hours) in _PROFILE.items():
        for number in range(runs):
            due = since + timedelta(seconds=chance.uniform(0, 7 * 86400))
            state = "FAILED" if chance.random() < failing else "COMPLETED"
            run_id = f"{name}-{number}"
            data.runs.append(
                RunRow(name, run_id, state, due, chance.uniform(0.4, 6.0), 1 + (state == "FAILED"))
            )
            for _ in range(int(effects) + (chance.random() < effects % 1)):
                status = "dead" if state == "FAILED" else "done"
                at = due + timedelta(seconds=chance.uniform(1, 30))
                data.effects.append(
                    EffectRow(name, run_id, status, 1, at, fallback=chance.random() < 0.05)
                )
                if chance.random() < 0.1:
                    data.already_done.append(run_id)
        if hours is not None:
            data.hours_saved = {**data.hours_saved, name: hours}
    data.omissions = {name: (runs, 0) for name, (runs, *_) in _PROFILE.items()}
    return compute(data, list(_PROFILE))


def main(path: str = "docs/images/metrics.png") -> None:
    """Write the sample week's chart (English) to `path`."""
    from moltbot.metrics_page import render_charts

    report = sample_report(datetime(2026, 12, 7, tzinfo=UTC))
    Path(path).write_bytes(render_charts(report, locale="en"))


if __name__ == "__main__":
    main(*sys.argv[1:])
