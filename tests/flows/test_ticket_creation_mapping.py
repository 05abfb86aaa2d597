"""Ticket mappings: loading from moltbot.toml, errors with the mapping's name and line, choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.ticket_creation.mapping import (
    Choice,
    Privacy,
    TicketMapping,
    choose_mapping,
    load_mappings,
    mapping_for_event,
)
from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError

ROOT = Path(__file__).parents[2]

BASE = """\
[ticket_creation.mappings.m]
source = "events"
event_types = ["a.b"]
project = "OPS"
issue_type = "Task"
summary = "{{ payload.title }}"
"""


def load(tmp_path: Path, text: str) -> dict[str, TicketMapping]:
    path = tmp_path / "moltbot.toml"
    path.write_text(text, encoding="utf-8")
    return load_mappings(ProjectConfig.load(path))


def test_the_shipped_mappings_load() -> None:
    mappings = load_mappings(ProjectConfig.load(ROOT / "moltbot.toml"))

    assert {name: m.source for name, m in mappings.items()} == {
        "support-form": "form",
        "payment-failed": "events",
        "payment-repeated": "events",
        "error-spike": "events",
    }
    form = mappings["support-form"]
    assert form.timestamp_column == "타임스탬프"
    assert isinstance(form.priority, Choice) and form.priority.options["매우 긴급"] == "Highest"
    assert isinstance(form.sla_hours, Choice) and form.sla_hours.options["Highest"] == 4.0
    assert form.privacy == Privacy(email="keep-domain", phone="mask")
    assert mappings["payment-failed"].event_types == ("payment.failed",)
    assert mappings["error-spike"].privacy.email == "mask"
    assert mappings["payment-repeated"].event_types == ("payment.repeated",)
    assert mappings["payment-repeated"].privacy.email == "mask"


def test_a_minimal_mapping_has_defaults(tmp_path: Path) -> None:
    [mapping] = load(tmp_path, BASE).values()

    assert (mapping.priority, mapping.assignee, mapping.sla_hours, mapping.dedup) == (
        None,
        None,
        None,
        None,
    )
    assert (mapping.labels, mapping.components, mapping.description) == ((), (), None)
    assert mapping.privacy == Privacy()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('priorty = "High"', "(moltbot.toml line 7): priorty: unknown field (known: source,"),
        ("summary2 = 1\n", "line 7): summary2: unknown field"),
        ("labels = 3", "line 7): labels: must be a list of texts, got int"),
        ('assignee = ["a"]', "line 7): assignee: must be a text (template), got a list"),
        ("sla_hours = -1", "line 7): sla_hours: must be 0 or more hours, got -1"),
        ('sla_hours = "4"', "line 7): sla_hours: must be a number of hours, got a text"),
        ('privacy = { email = "hide" }', "line 7): privacy.email: must be one of keep-domain,"),
        ('privacy = { mail = "keep" }', "line 7): privacy.mail: unknown key"),
        ('timestamp_column = "t"', "line 7): timestamp_column: only a form mapping has"),
        (
            '[ticket_creation.mappings.m.priority]\nform = "{{ x }}"\nmap = { a = "High" }',
            "(moltbot.toml line 8): priority.form: unknown key (a choice has from, map, default)",
        ),
        (
            '[ticket_creation.mappings.m.priority]\nfrom = "{{ x }}"',
            "(moltbot.toml line 7): priority: a choice needs 'from' (a template) and 'map'",
        ),
        (
            '[ticket_creation.mappings.m.sla_hours]\nfrom = "x"\nmap = { a = "soon" }',
            "(moltbot.toml line 9): sla_hours.map.a: must be a number of hours, got a text",
        ),
        (
            'description = """\nline one\n{% if x %}\nno end\n"""',
            "(moltbot.toml line 10): description: template error: Unexpected end of template.",
        ),
        (
            'description = """\n{{ a }}\n{{ b ) }}\n"""',
            "(moltbot.toml line 9): description: template error: unexpected ')'",
        ),
    ],
)
def test_mapping_errors_name_the_mapping_and_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        load(tmp_path, BASE + extra + "\n")

    assert str(raised.value).startswith("mapping 'm' ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE.replace('project = "OPS"\n', ""),
            "mapping 'm' (moltbot.toml line 1): project: is required",
        ),
        (BASE.replace('"events"', '"webhook"'), "line 2): source: must be 'form' or 'events'"),
        (
            BASE.replace('"events"', '"form"'),
            "line 3): event_types: only an events mapping takes event types",
        ),
        (
            "[ticket_creation.mappings]\nm = 1\n",
            "mapping 'm' (moltbot.toml line 2): must be a table",
        ),
    ],
)
def test_structural_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        load(tmp_path, text)

    assert message in str(raised.value)


def test_a_runtime_template_error_names_the_line_inside_the_template(tmp_path: Path) -> None:
    text = BASE + 'description = """\n첫 줄\n{{ payload.customer.name }}\n"""\n'
    [mapping] = load(tmp_path, text).values()
    assert mapping.description is not None

    with pytest.raises(InputError) as raised:
        mapping.render(mapping.description, {"payload": {"customer": {}}}, "event e-1 (a.b)")

    # Line 7 opens the string, 8 is its first line, 9 the failing one.
    assert str(raised.value).startswith("mapping 'm' (moltbot.toml line 9): description: ")
    assert str(raised.value).endswith("(event e-1 (a.b))")


def test_choice_matches_exactly_then_ignoring_case_then_default(tmp_path: Path) -> None:
    text = BASE + (
        "[ticket_creation.mappings.m.priority]\n"
        'from = "{{ level }}"\nmap = { Critical = "Highest", "경고" = "Medium" }\n'
    )
    [mapping] = load(tmp_path, text).values()
    choice = mapping.priority
    assert isinstance(choice, Choice)

    def pick(level: str) -> str:
        return mapping.choose(choice, {"level": level}, "row 2", "priority")

    assert pick("Critical") == "Highest"
    assert pick(" critical ") == "Highest"
    assert pick("경고") == "Medium"
    with pytest.raises(InputError) as raised:
        pick("call me at 010-1234-5678")
    assert str(raised.value) == (
        "mapping 'm' (moltbot.toml line 7): priority: no entry for 'call me at ***' in its map "
        "and no default (row 2)"
    )


def test_choose_mapping_by_name_or_as_the_only_one(tmp_path: Path) -> None:
    text = (
        BASE
        + BASE.replace(".m]", ".n]").replace("a.b", "c.d")
        + (
            '[ticket_creation.mappings.f]\nsource = "form"\nproject = "OPS"\n'
            'issue_type = "Task"\nsummary = "x"\n'
        )
    )
    mappings = load(tmp_path, text)

    assert choose_mapping(mappings, None, "form").name == "f"
    assert choose_mapping(mappings, "m", "events").name == "m"
    assert mapping_for_event(mappings, None, "c.d", "e").name == "n"
    assert mapping_for_event(mappings, "m", "a.b", "e").name == "m"
    with pytest.raises(
        InputError, match=r"^give mapping=<name>: 2 mappings are for events \(m, n\)"
    ):
        choose_mapping(mappings, None, "events")
    with pytest.raises(InputError, match=r"^mapping 'f' is for form, not for events$"):
        choose_mapping(mappings, "f", "events")
    with pytest.raises(InputError, match=r"^x: mapping 'm' takes event types a\.b, not 'c\.d'$"):
        mapping_for_event(mappings, "m", "c.d", "x")
    with pytest.raises(InputError, match=r"^unknown mapping 'z' \(configured: m, n, f\)$"):
        choose_mapping(mappings, "z", "form")
