"""Settings precedence (CLI > environment > moltbot.toml > defaults) and Prefect defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from moltbot.config.settings import get_settings


def test_defaults(moltbot_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOLTBOT_HOME")

    settings = get_settings()

    assert settings.home == Path(".moltbot")
    assert settings.timezone == "Asia/Seoul"
    assert settings.locale == "en"
    assert settings.resolved_ledger_url == f"sqlite:///{Path('.moltbot').resolve()}/ledger.sqlite3"


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("moltbot.toml").write_text(
        'timezone = "Europe/Berlin"\nlocale = "ko"\nledger_url = "sqlite:///from-file.db"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("MOLTBOT_LOCALE", "en")

    from_file_and_env = get_settings()
    from_cli = get_settings(timezone="UTC", ledger_url=None)

    assert from_file_and_env.timezone == "Europe/Berlin"
    assert from_file_and_env.locale == "en"
    assert from_file_and_env.resolved_ledger_url == "sqlite:///from-file.db"
    assert from_cli.timezone == "UTC"


def test_settings_follow_every_change_of_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reads are cached by their inputs: each change must still be seen, and callers get copies.
    config = Path("moltbot.toml")
    config.write_text('locale = "en"\n', encoding="utf-8")
    first = get_settings()
    config.write_text('locale = "ko"\n', encoding="utf-8")  # same size, same second
    from_file = get_settings()
    monkeypatch.setenv("moltbot_timezone", "UTC")  # matched in any case, as pydantic does
    from_env = get_settings()
    first.ops_channels.append("changed by a caller")

    assert (first.locale, from_file.locale) == ("en", "ko")
    assert from_env.timezone == "UTC"
    assert get_settings().ops_channels == ["outbox"]


def test_unknown_timezone_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Mars/Olympus")

    with pytest.raises(ValidationError, match="unknown timezone"):
        get_settings()


def test_cli_reports_bad_settings_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from moltbot.cli import app

    monkeypatch.setenv("MOLTBOT_LOCALE", "fr")

    result = CliRunner().invoke(app, ["list"])

    assert result.exit_code == 2
    assert "bad settings: locale:" in result.stderr


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ({}, "false 1"),
        ({"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "0"}, "true 0"),
    ],
)
def test_prefect_telemetry_off_unless_the_user_chose(preset: dict, expected: str) -> None:
    import os

    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK"}
    }
    code = (
        "import os, flows, prefect.settings as s; "
        "print(str(s.get_current_settings().server.analytics_enabled).lower(), "
        "os.environ['DO_NOT_TRACK'])"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, **preset},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert completed.stdout.strip() == expected
