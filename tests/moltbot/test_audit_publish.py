"""Runs publish the day's audit table at most once per interval, and every day's last entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import Artifact
from prefect.client.schemas.sorting import ArtifactSort
from typer.testing import CliRunner

from moltbot.audit import AUDIT_HOOKS, artifact_key, audit_clock
from moltbot.cli import app
from moltbot.state.audit import AuditRow, AuditTrail
from moltbot.state.ledger import Ledger

SEOUL = ZoneInfo("Asia/Seoul")


@dataclass
class Clock:
    now: datetime

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Iterator[Clock]:
    # Each test sets its own day, far from today, so the shared Prefect test server holds no
    # other versions of its artifacts.
    clock = Clock(datetime(2031, 1, 1, 9, 0, tzinfo=SEOUL))
    with audit_clock(lambda: clock.now):
        yield clock


@flow(name="audit-probe", persist_result=False, **AUDIT_HOOKS)
def probe(number: int) -> int:
    return number


def versions(day: date) -> list[list[dict[str, str]]]:
    """Every published version of `day`'s table, oldest first (the rows of each)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(day)])),
            sort=ArtifactSort.CREATED_DESC,
        )
    return [
        json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        for artifact in reversed(found)
    ]


def latest(day: date) -> Artifact:
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(day)])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return artifact


def trail_rows() -> list[AuditRow]:
    with Ledger.from_settings() as ledger:
        return AuditTrail(ledger).rows()


def test_runs_within_the_interval_publish_the_day_once(prefect_api: str, clock: Clock) -> None:
    day = date(2031, 1, 2)
    clock.now = datetime(2031, 1, 2, 9, 0, tzinfo=SEOUL)
    for number in range(5):
        probe(number)
        clock.advance(seconds=59)

    assert len(trail_rows()) == 5  # every run writes its entry
    assert [len(table) for table in versions(day)] == [1]  # the first run of the day published

    clock.now = datetime(2031, 1, 2, 9, 5, tzinfo=SEOUL)  # 300 s after the first publication
    probe(5)

    tables = versions(day)
    assert [len(table) for table in tables] == [1, 6]
    assert [row["#"] for row in tables[-1]] == ["1", "2", "3", "4", "5", "6"]
    with Ledger.from_settings() as ledger:
        head = AuditTrail(ledger).head()
    published = latest(day)
    assert f"6 entries; chain head {head[:16]}" in (published.description or "")
    assert published.flow_run_id is not None  # on the page of the run that published it


def test_the_next_days_first_run_publishes_the_days_last_entries(
    prefect_api: str, clock: Clock
) -> None:
    clock.now = datetime(2031, 1, 3, 23, 50, tzinfo=SEOUL)
    for _ in range(3):
        probe(1)
        clock.advance(minutes=2)
    assert [len(table) for table in versions(date(2031, 1, 3))] == [1]

    clock.now = datetime(2031, 1, 4, 0, 1, tzinfo=SEOUL)
    probe(2)
    probe(3)  # within the interval: publishes nothing

    assert [len(table) for table in versions(date(2031, 1, 3))] == [1, 3]
    assert [len(table) for table in versions(date(2031, 1, 4))] == [1]


def test_a_day_already_final_is_not_published_again(prefect_api: str, clock: Clock) -> None:
    clock.now = datetime(2031, 1, 5, 23, 59, tzinfo=SEOUL)
    probe(1)  # the day's first and last run: its first version is its final one
    clock.now = datetime(2031, 1, 6, 8, 0, tzinfo=SEOUL)
    probe(2)

    assert [len(table) for table in versions(date(2031, 1, 5))] == [1]
    assert [len(table) for table in versions(date(2031, 1, 6))] == [1]


def test_an_interval_of_zero_publishes_after_every_run(
    prefect_api: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_AUDIT_PUBLISH_INTERVAL_SECONDS", "0")
    clock.now = datetime(2031, 1, 7, 9, 0, tzinfo=SEOUL)
    for number in range(3):
        probe(number)

    assert [len(table) for table in versions(date(2031, 1, 7))] == [1, 2, 3]


def test_audit_publish_publishes_on_demand_and_counts_as_a_publication(
    prefect_api: str, clock: Clock
) -> None:
    clock.now = datetime(2031, 1, 8, 9, 0, tzinfo=SEOUL)
    probe(1)
    clock.advance(minutes=1)
    probe(2)
    clock.advance(minutes=1)

    published = CliRunner().invoke(app, ["audit", "--publish", "--json"])
    clock.advance(minutes=4)  # 5 minutes after the run's publication, 4 after the command's
    probe(3)

    assert published.exit_code == 0, published.output
    assert [len(table) for table in versions(date(2031, 1, 8))] == [1, 2]


def test_of_concurrent_runs_one_takes_the_turn_and_a_failed_one_gives_it_back(
    tmp_path: Path,
) -> None:
    at = datetime(2031, 1, 9, 0, 0, tzinfo=UTC)
    day = date(2031, 1, 9)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        trail = AuditTrail(ledger)
        assert trail.claim_publication(day, last_seq=3, at=at, seen=None)
        assert not trail.claim_publication(day, last_seq=3, at=at, seen=None)
        first = trail.publication(day)
        later = at + timedelta(minutes=5)
        assert trail.claim_publication(day, last_seq=7, at=later, seen=first)
        assert not trail.claim_publication(day, last_seq=8, at=later, seen=first)

        trail.release_publication(day, at=later, seen=first)

        assert trail.publication(day) == first
