"""How often `moltbot serve` looks for runs to start: the user's setting, else 2 s."""

from __future__ import annotations

import pytest
from prefect.settings import Settings
from prefect.settings.models.runner import RunnerSettings

from deployments.serving import RUNNER_POLL_SECONDS, runner_poll_seconds


def test_the_poll_is_two_seconds_unless_the_user_set_one() -> None:
    # Prefect's own default (10 s) is not a choice anybody made: every webhook batch would wait
    # for it.
    assert RUNNER_POLL_SECONDS == 2
    unset = RunnerSettings.model_construct()
    assert runner_poll_seconds(Settings.model_construct(runner=unset)) == 2
    chosen = RunnerSettings.model_construct(poll_frequency=15)
    assert runner_poll_seconds(Settings.model_construct(runner=chosen)) == 15


def test_a_poll_frequency_from_the_environment_counts_as_the_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "5")

    assert runner_poll_seconds(Settings()) == 5
