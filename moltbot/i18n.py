"""Words of the CLI's tables in the configured locale (English and Korean)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from moltbot.config.settings import get_settings

T = TypeVar("T")

_TEXTS: dict[str, dict[str, tuple[str, ...]]] = {
    "outbox_columns": {
        "en": ("key", "automation", "kind", "status", "via / route", "updated (UTC)", "error"),
        "ko": ("키", "자동화", "종류", "상태", "전달 채널 / 경로", "갱신 (UTC)", "오류"),
    },
    "list_columns": {
        "en": ("automation", "description", "default schedule"),
        "ko": ("자동화", "설명", "기본 일정"),
    },
    "list_hint": {
        "en": ("Parameters and an example: uv run moltbot show NAME",),
        "ko": ("파라미터와 예제: uv run moltbot show 이름",),
    },
    "show_columns": {
        "en": ("parameter", "expected", "default", "meaning", "parameters", "required"),
        "ko": ("파라미터", "형식", "기본값", "의미", "파라미터", "필수"),
    },
    "run_footer": {
        "en": ("Prefect UI: {url}   log: {log}", "Prefect's logs of these runs: {log}"),
        "ko": ("Prefect UI: {url}   로그: {log}", "이 실행들의 Prefect 로그: {log}"),
    },
    "outbox_empty": {
        "en": ("The ledger holds no effects yet.",),
        "ko": ("원장에 기록된 작업이 아직 없습니다.",),
    },
}


def in_locale(by_locale: Mapping[str, T]) -> T:
    """The entry of `by_locale` for `MOLTBOT_LOCALE` (the English one when it has none)."""
    return by_locale.get(get_settings().locale, by_locale["en"])


def cli_text(name: str) -> tuple[str, ...]:
    """The texts called `name` in `MOLTBOT_LOCALE` (English when the locale has none)."""
    return in_locale(_TEXTS[name])
