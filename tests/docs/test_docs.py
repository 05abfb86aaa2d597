"""The docs/ pages say only what the code has: commands, options, parameters, settings, files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from moltbot.cli import app
from moltbot.config.settings import Settings
from moltbot.registry import automations

DOCS = Path(__file__).resolve().parents[2] / "docs"
# The pages this test covers (other pages in docs/ have their owners' checks).
PAGES = [DOCS / name for name in ("README.md", "automations.md", "accounts.md", "production.md")]
# Everything under docs/ a reader copies from: pages, env examples, units, compose file.
TEXTS = sorted(
    path for path in DOCS.rglob("*") if path.is_file() and path.suffix in {"", ".md", ".service",
                                                                            ".example", ".yaml"}
)  # fmt: skip
# Read by Prefect from the environment directly, not through its settings model.
PREFECT_RAW_ENVIRONMENT = {"PREFECT_SERVER_ENCRYPTION_KEY"}


def _commands(text: str) -> list[list[str]]:
    """Every `uv run moltbot …` command line (backslash continuations joined), as words."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for match in re.finditer(r"uv run moltbot ([^\n`|]*)", joined):
        words = match.group(1).split("#", 1)[0].split()
        found.append(words)
    return found


def _is_group(command: Any) -> bool:
    # Typer builds on its own copy of click: a group is whatever has subcommands.
    return hasattr(command, "commands")


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (click) command the words name, global options skipped, and the words after it."""
    command = typer.main.get_command(app)
    rest = list(words)
    while rest and rest[0].startswith("--") and _is_group(command):
        option = rest.pop(0)
        if "=" not in option and option not in ("--help", "--version"):
            rest.pop(0)  # the global option's value (--home DIR)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        name = rest[0]
        if name in ("COMMAND", "…"):
            return command, []
        assert name in command.commands, f"no command `moltbot {name}`"
        command = command.commands[name]
        rest.pop(0)
    return command, rest


def _options(command: Any) -> set[str]:
    return {option for param in command.params for option in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_moltbot_command_and_option_exists(page: Path) -> None:
    commands = _commands(page.read_text(encoding="utf-8"))
    assert commands or page.name == "README.md"
    for words in commands:
        command, rest = _resolve(words)
        known = _options(command) | {"--help"}
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("--"):
                assert option in known, f"{page.name}: `moltbot {' '.join(words)}`: {option}"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_param_given_to_an_automation_is_one_of_its_parameters(page: Path) -> None:
    flows = {automation.name: automation.load_flow() for automation in automations()}
    for words in _commands(page.read_text(encoding="utf-8")):
        if words[:1] != ["run"] or len(words) < 2 or words[1] not in flows:
            continue
        known = set(flows[words[1]].parameters.properties)
        for index, word in enumerate(words):
            if word in ("--param", "-p") and index + 1 < len(words):
                name = words[index + 1].strip("'\"").split("=", 1)[0]
                assert name in known, f"{page.name}: {words[1]} has no parameter {name!r}"


def test_each_automation_section_lists_exactly_the_flows_parameters() -> None:
    text = (DOCS / "automations.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    for automation in automations():
        [section] = [part for part in sections if part.startswith(automation.name + "\n")]
        table = section.split("### Parameters", 1)[1].split("###", 1)[0]
        documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
        assert documented == list(automation.load_flow().parameters.properties), automation.name


def test_every_moltbot_setting_named_exists() -> None:
    from moltbot.webhooks.secrets import CACHE_KEY_ENV, SECRET_ENV_PREFIX

    settings = {f"MOLTBOT_{name.upper()}" for name in Settings.model_fields}
    # Secrets the gateway reads from the environment only, never through the settings file.
    settings.add(CACHE_KEY_ENV)
    for path in TEXTS:
        for name in re.findall(r"\bMOLTBOT_[A-Z_]+[A-Z]\b", path.read_text(encoding="utf-8")):
            if name.startswith(SECRET_ENV_PREFIX):
                continue
            assert name in settings, f"{path.name}: {name} is not a moltbot setting"


def test_every_prefect_setting_named_exists() -> None:
    from prefect.settings import Settings as PrefectSettings

    names: set[str] = set(PREFECT_RAW_ENVIRONMENT)

    def walk(model: type, prefix: list[str]) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, [*prefix, name])
                continue
            names.add("PREFECT_" + "_".join([*prefix, name]).upper())
            for alias in getattr(field.validation_alias, "choices", []):
                if isinstance(alias, str):
                    names.add(alias.upper())

    walk(PrefectSettings, [])
    for path in TEXTS:
        for name in re.findall(r"\bPREFECT_[A-Z_]+[A-Z]\b", path.read_text(encoding="utf-8")):
            assert name in names, f"{path.name}: {name} is not a Prefect setting"


def test_compose_file_has_the_four_services_and_the_prefect_image() -> None:
    compose = yaml.safe_load((DOCS / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker", "gateway"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15"
    assert services["prefect-server"]["image"] == "prefecthq/prefect:3-python3.11"
    assert services["worker"]["build"]["dockerfile"] == "docs/deploy/Dockerfile"
    assert services["gateway"]["command"][:3] == ["moltbot", "webhook", "serve"]


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_pages_open_with_a_korean_summary_and_link_only_to_files_that_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "한국어 요약" in text.split("\n## ", 1)[0]
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
