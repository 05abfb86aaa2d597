"""An automation's parameters: parsing `--param`, checking values one by one, describing them."""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from moltbot.errors import InputError

if TYPE_CHECKING:
    from moltbot.registry import Automation

_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
# A value starting like this was meant as JSON: a parse error must say so, not pass it on as text.
_JSON_OPENERS = ("[", "{", '"')


@dataclass(frozen=True)
class ParameterInfo:
    """One flow parameter as `moltbot show` lists it.

    Attributes:
        name: the parameter's name.
        expected: its type in words (`a date (YYYY-MM-DD)`, `a list of text` …).
        required: the flow cannot run without it.
        default: its default value (None when it has none or it is None).
        meaning: the first sentence of its description in the flow's docstring.
    """

    name: str
    expected: str
    required: bool
    default: Any
    meaning: str


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`["a=1", "b=x"]` -> `{"a": 1, "b": "x"}`: values are JSON when they parse, else strings.

    Raises:
        InputError: an item without `=` or with an empty name, a value that looks like JSON but
            does not parse, a URL with a password (the message never repeats the value).
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        name, separator, raw_value = pair.partition("=")
        name = name.strip()
        if not separator or not name:
            raise InputError("--param expects key=value (a name, '=', then the value)")
        if _URL_WITH_PASSWORD.search(raw_value):
            # Parameters are stored with the run and shown in the Prefect UI.
            raise InputError(
                f"{name}: the value holds a URL with a password; keep it in a Prefect Secret "
                "block instead (for a source: source=secret:<block name>)"
            )
        try:
            value: Any = json.loads(raw_value)
        except json.JSONDecodeError as exc:
            if raw_value.lstrip().startswith(_JSON_OPENERS):
                raise InputError(
                    f"{name}: looks like JSON but does not parse ({exc.msg} at character "
                    f"{exc.pos + 1}); quote the whole pair for the shell, e.g. "
                    f'--param \'{name}=["a", "b"]\''
                ) from None
            value = raw_value
        params[name] = value
    return params


def missing_params(automation: Automation, params: dict[str, Any]) -> list[tuple[str, str]]:
    """What `params` lacks for the automation to run: (first parameter name, what is needed).

    Both the signature's required parameters and the registry's required choices count.
    """
    signature = inspect.signature(automation.load_flow().fn)
    missing = [
        (name, name)
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty and name not in params
    ]
    config = None
    if any(choice.config_table for choice in automation.required_choices):
        from moltbot.config.project import ProjectConfig

        config = ProjectConfig.load().data
    missing += [
        (choice.groups[0][0], f"{choice.what}: {choice.words()}")
        for choice in automation.required_choices
        if not choice.satisfied_by(params, config)
    ]
    return missing


def check_params(automation: Automation, params: dict[str, Any]) -> dict[str, Any]:
    """The values of `params` converted to the flow's types, checked before anything runs.

    Each bad value gets one line that starts with the parameter's name and says what was
    expected; values are never repeated (they may be personal data).

    Raises:
        InputError: an unknown or missing parameter, or a value of the wrong type.
    """
    checked = check_values(automation, params)
    missing = missing_params(automation, params)
    if missing:
        first, needed = missing[0]
        raise InputError(
            f"{first}: missing; {automation.name} needs {needed} (give it with --param "
            f"{first}=..., see `uv run moltbot show {automation.name}`)"
        )
    return checked


def check_values(automation: Automation, params: dict[str, Any]) -> dict[str, Any]:
    """`params` converted to the flow's types; missing ones are not checked here.

    Raises:
        InputError: an unknown parameter or a value of the wrong type (one line, no value).
    """
    flow = automation.load_flow()
    known = list(inspect.signature(flow.fn).parameters)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InputError(
            f"{unknown[0]}: not a parameter of {automation.name} (valid: {', '.join(known)}; "
            f"see `uv run moltbot show {automation.name}`)"
        )
    hints = typing.get_type_hints(flow.fn)
    checked: dict[str, Any] = {}
    for parameter, value in params.items():
        hint = hints.get(parameter, Any)
        try:
            checked[parameter] = TypeAdapter(hint).validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = "".join(f"[{part}]" for part in error["loc"] if not isinstance(part, str))
            raise InputError(
                f"{parameter}{where}: expected {expected_words(hint)} ({_reason(error)})"
            ) from None
    return checked


def describe_params(automation: Automation) -> list[ParameterInfo]:
    """The flow's parameters in signature order, with their types, defaults and meanings."""
    flow = automation.load_flow()
    schema = flow.parameters.model_dump()["properties"]
    hints = typing.get_type_hints(flow.fn)
    infos = []
    for name, parameter in inspect.signature(flow.fn).parameters.items():
        required = parameter.default is inspect.Parameter.empty
        description = " ".join(str(schema.get(name, {}).get("description") or "").split())
        infos.append(
            ParameterInfo(
                name=name,
                expected=expected_words(hints.get(name, Any)),
                required=required,
                default=None if required else parameter.default,
                meaning=description,
            )
        )
    return infos


def expected_words(hint: Any) -> str:
    """A type annotation in words: `date | None` -> `a date (YYYY-MM-DD)`."""
    import datetime

    origin = typing.get_origin(hint)
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(dict.fromkeys(expected_words(a) for a in arguments))
    if origin is list:
        return f"a JSON list of {_plural(expected_words(arguments[0]))}" if arguments else "a list"
    if origin is dict:
        value = expected_words(arguments[1]) if len(arguments) == 2 else "values"
        return f"a JSON object of {_plural(value)}"
    words = {
        str: "text",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        datetime.date: "a date (YYYY-MM-DD)",
        datetime.datetime: "a date and time (ISO 8601)",
    }
    return words.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(words: str) -> str:
    alternatives = words.split(" or ")
    if len(alternatives) > 1:
        return f"({' or '.join(_plural(each) for each in alternatives)})"
    for article in ("a ", "an "):
        if words.startswith(article):
            plural = words[len(article) :]
            return plural.replace("JSON list ", "JSON lists ").replace(
                "JSON object ", "JSON objects "
            )
    return words


def _reason(error: Any) -> str:
    # pydantic's message without the "Input should be" preamble, which repeats the expectation.
    message = str(error["msg"])
    return message[0].lower() + message[1:] if message else error["type"]
