"""The metrics-weekly flow: the page published as an artifact, figures in its result."""

from __future__ import annotations

from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

from flows.metrics_weekly.flow import ARTIFACT_KEY, metrics_weekly
from moltbot.errors import InputError
from moltbot.resultview import result_view
from moltbot.state.ledger import Ledger


def test_the_weeks_page_is_published_with_its_chart(prefect_api: str) -> None:
    with Ledger.from_settings() as ledger:
        ledger.claim("k:1", automation="form-digest", kind="message", target="outbox")
        ledger.complete("k:1", via="outbox")

    result = metrics_weekly(days=7)

    [artifact] = result["artifacts"]
    assert artifact["key"] == ARTIFACT_KEY
    digest = next(m for m in result["metrics"]["automations"] if m["automation"] == "form-digest")
    assert digest["effects"]["done"] == 1
    with get_client(sync_client=True) as client:
        [page] = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[UUID(artifact["id"])]))
        )
    assert page.type == "markdown"
    assert page.data.startswith("# moltbot metrics")
    assert "](data:image/png;base64," in page.data
    assert "| form-digest | " in page.data
    # `moltbot run metrics-weekly` says what it published.
    [line, _nothing_sent] = result_view(ARTIFACT_KEY, result, currency="KRW", locale="en")
    assert str(line).endswith("succeeded; the page is the artifact metrics-weekly")


def test_a_period_under_a_day_is_refused(prefect_api: str) -> None:
    with pytest.raises(InputError, match="days must be 1 or more"):
        metrics_weekly(days=0)
