"""Tests of the deployment specs built from the registry and moltbot.toml (no Prefect server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.specs import (
    MOLTBOT_TAG,
    RunPolicy,
    build_specs,
    code_version,
    parse_deployment_settings,
)
from moltbot.errors import InputError
from moltbot.registry import automations

VERSION = "abc123"


def test_every_automation_gets_one_deployment_with_its_registry_schedule_in_seoul() -> None:
    specs = build_specs({}, version=VERSION)

    assert [spec.full_name for spec in specs] == [f"{a.name}/default" for a in automations()]
    for spec, automation in zip(specs, automations(), strict=True):
        assert spec.cron == automation.default_schedule
        assert spec.interval_seconds is None
        assert spec.timezone == "Asia/Seoul"
        assert spec.tags == (MOLTBOT_TAG,)
        assert spec.version == VERSION
        assert spec.policy == RunPolicy.of(automation)
        assert spec.parameters == automation.default_parameters


def test_the_registry_defaults_are_the_documented_schedules_and_policies() -> None:
    specs = {spec.automation.name: spec for spec in build_specs({}, version=VERSION)}

    assert specs["daily-report"].cron == "0 9 * * *"
    assert specs["inventory-alert"].cron == "*/30 * * * *"
    assert specs["inventory-alert"].policy.collision_strategy == "CANCEL_NEW"
    assert specs["daily-report"].policy.collision_strategy == "ENQUEUE"
    assert all(spec.policy.concurrency_limit == 1 for spec in specs.values())


def test_a_deployment_missing_a_required_parameter_is_created_paused_and_says_why() -> None:
    [daily] = build_specs({}, only=["daily-report"], version=VERSION)

    assert daily.missing_parameters == ("source",)
    assert daily.paused

    [given] = build_specs(
        {"daily-report": {"parameters": {"source": "orders.csv"}}},
        only=["daily-report"],
        version=VERSION,
    )
    assert (given.missing_parameters, given.paused) == ((), False)
    assert given.parameters == {"source": "orders.csv"}


def test_config_overrides_schedule_timezone_tags_policy_and_can_disable() -> None:
    table = {
        "daily-report": {
            "cron": "30 8 * * 1-5",
            "timezone": "Europe/Berlin",
            "tags": ["sales", "moltbot"],
            "parameters": {"source": "s.csv", "channels": ["슬랙"]},
            "concurrency_limit": 2,
            "collision_strategy": "CANCEL_NEW",
            "paused": True,
        },
        "inventory-alert": {"interval_seconds": 5, "parameters": {"source": "x.csv"}},
    }

    specs = {spec.automation.name: spec for spec in build_specs(table, version=VERSION)}
    daily, inventory = specs["daily-report"], specs["inventory-alert"]

    assert (daily.cron, daily.timezone, daily.paused) == ("30 8 * * 1-5", "Europe/Berlin", True)
    assert daily.tags == ("moltbot", "sales")
    assert daily.parameters["channels"] == ["슬랙"]
    assert (daily.policy.concurrency_limit, daily.policy.collision_strategy) == (2, "CANCEL_NEW")
    assert (inventory.cron, inventory.interval_seconds) == (None, 5)

    disabled = build_specs({"daily-report": {"enabled": False}}, version=VERSION)
    assert "daily-report" not in [spec.automation.name for spec in disabled]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"daily-reports": {}}, "unknown automation 'daily-reports'"),
        ({"daily-report": {"cronn": "x"}}, "cronn: Extra inputs are not permitted"),
        ({"daily-report": {"interval_seconds": 0}}, "interval_seconds: Input should be greater"),
        ({"daily-report": "x"}, "must be a table"),
        ({"daily-report": {"timezone": "Mars/Base"}}, "unknown timezone 'Mars/Base'"),
    ],
)
def test_bad_config_entries_are_refused_with_the_entry_named(table: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_specs(table, version=VERSION)


def test_config_errors_name_the_line_of_moltbot_toml(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(
        '[deployments.daily-report]\nparameters = { source = "a.csv" }\ncollision_strategy = "X"\n'
    )

    with pytest.raises(InputError, match=r"moltbot.toml line 3\): collision_strategy"):
        build_specs(version=VERSION)


def test_specs_read_moltbot_toml_of_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(
        '[deployments.daily-report]\nparameters = { source = "a.csv" }\ninterval_seconds = 60\n'
    )

    [daily] = build_specs(only=["daily-report"], version=VERSION)

    assert (daily.interval_seconds, daily.parameters) == (60, {"source": "a.csv"})


def test_unknown_names_in_only_are_refused() -> None:
    with pytest.raises(InputError, match="unknown automation 'nope'"):
        build_specs({}, only=["nope"], version=VERSION)


def test_the_runner_deployment_carries_schedule_policy_and_module_entrypoint() -> None:
    [spec] = build_specs(
        {"inventory-alert": {"parameters": {"source": "x.csv"}}},
        only=["inventory-alert"],
        version=VERSION,
    )

    deployment = spec.to_runner_deployment(work_pool_name="pool")

    assert deployment.name == "default"
    assert deployment.entrypoint == "flows.inventory_alert.flow.inventory_alert"
    assert deployment.work_pool_name == "pool"
    assert deployment.version == VERSION
    assert deployment.tags == ["moltbot"]
    assert deployment.parameters == {"source": "x.csv"}
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("*/30 * * * *", "Asia/Seoul")


def test_the_code_version_is_the_commit_marked_dirty_or_the_package_version(
    tmp_path: Path,
) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=repo, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()

    assert code_version(repo) == commit
    (repo / "a.txt").write_text("2")
    assert code_version(repo) == f"{commit}-dirty"
    assert code_version(tmp_path / "not-a-repo") in {"0.1.0", "unknown"}


def test_parse_accepts_an_empty_table() -> None:
    assert parse_deployment_settings({}) == {}
