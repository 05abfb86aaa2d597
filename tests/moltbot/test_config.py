"""The project config file: tables by name, the line of every key, invalid TOML, absence."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltbot.config.project import ProjectConfig
from moltbot.config.settings import get_settings
from moltbot.errors import InputError

TEXT = """\
# comment
[ticket_creation.mappings.support-form]
source = "form"
summary = "[{{ answers['유형'] }}] {{ answers['제목'] }}"
description = \"\"\"
첫 줄
둘째 줄 {{ x }}
\"\"\"
inline = { from = "a", map = { b = "c" } }

[ticket_creation.mappings."결제 실패"]
source = "events"
'quoted key' = 1
dotted.inner = 2
one_line = \"\"\"same line {{ y }}\"\"\"
after = true

[[webhook.routes]]
path = "/a"

[[webhook.routes]]
path = "/b"
"""


@pytest.fixture
def config(tmp_path: Path) -> ProjectConfig:
    path = tmp_path / "moltbot.toml"
    path.write_text(TEXT, encoding="utf-8")
    return ProjectConfig.load(path)


def test_tables_by_name(config: ProjectConfig) -> None:
    mappings = config.table("ticket_creation", "mappings")

    assert list(mappings) == ["support-form", "결제 실패"]
    assert mappings["support-form"]["description"] == "첫 줄\n둘째 줄 {{ x }}\n"
    assert config.table("ticket_creation", "nothing") is None
    assert config.table("webhook") == {"routes": [{"path": "/a"}, {"path": "/b"}]}


@pytest.mark.parametrize(
    ("keys", "line"),
    [
        (("ticket_creation", "mappings", "support-form"), 2),
        (("ticket_creation", "mappings", "support-form", "summary"), 4),
        (("ticket_creation", "mappings", "support-form", "description"), 5),
        (("ticket_creation", "mappings", "support-form", "inline"), 9),
        # Keys inside an inline table are on the line of the key that holds it.
        (("ticket_creation", "mappings", "support-form", "inline", "map", "b"), 9),
        (("ticket_creation", "mappings", "결제 실패"), 11),
        (("ticket_creation", "mappings", "결제 실패", "quoted key"), 13),
        (("ticket_creation", "mappings", "결제 실패", "dotted", "inner"), 14),
        # Lines inside a multi-line string are not mistaken for keys.
        (("ticket_creation", "mappings", "결제 실패", "after"), 16),
        (("webhook", "routes", 0, "path"), 19),
        (("webhook", "routes", 1, "path"), 22),
        (("ticket_creation", "mappings", "support-form", "missing"), 2),
        (("nothing",), None),
    ],
)
def test_line_of_a_key(config: ProjectConfig, keys: tuple, line: int | None) -> None:
    assert config.line_of(*keys) == line


def test_lines_inside_string_values(config: ProjectConfig) -> None:
    description = ("ticket_creation", "mappings", "support-form", "description")
    one_line = ("ticket_creation", "mappings", "결제 실패", "one_line")

    # TOML drops the newline after opening quotes: the value starts on the next line.
    assert config.value_line(description, 1) == 6
    assert config.value_line(description, 2) == 7
    assert config.value_line(one_line, 1) == 15
    assert config.where(*description, line=7) == "moltbot.toml line 7"
    assert config.where("ticket_creation", "mappings", "support-form") == "moltbot.toml line 2"


def test_a_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    config = ProjectConfig.load(tmp_path / "moltbot.toml")

    assert (config.found, config.data, config.table("ticket_creation")) == (False, {}, None)
    assert config.where("a") == "moltbot.toml"


def test_default_is_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text("[a]\nb = 1\n", encoding="utf-8")

    assert ProjectConfig.load().table("a") == {"b": 1}


def test_invalid_toml_is_input_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "moltbot.toml"
    path.write_text("[a]\nb = 1\nc = \n", encoding="utf-8")

    with pytest.raises(InputError, match=r"^moltbot.toml: not valid TOML: .*line 3"):
        ProjectConfig.load(path)


def test_a_value_where_a_table_is_expected(config: ProjectConfig) -> None:
    with pytest.raises(InputError, match=r"moltbot\.toml line 3: .*source' must be a table"):
        config.table("ticket_creation", "mappings", "support-form", "source")


def test_settings_ignore_the_automation_tables(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(TEXT, encoding="utf-8")

    assert get_settings().timezone == "Asia/Seoul"


def test_a_config_file_that_is_not_utf8_is_one_line_without_its_content(tmp_path: Path) -> None:
    from moltbot.config.project import ProjectConfig
    from moltbot.errors import InputError

    path = tmp_path / "moltbot.toml"
    path.write_bytes('[routes.daily-report]\ninfo = ["팀-슬랙"]\n'.encode("cp949"))

    with pytest.raises(InputError) as raised:
        ProjectConfig.load(path)

    assert str(raised.value).startswith("moltbot.toml: not valid utf-8 at byte ")
    assert raised.value.__context__ is None and raised.value.__cause__ is None
