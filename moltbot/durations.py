"""Ages written as `90d`, `12h`, `2w`, `30m`: how the CLI's --since and --older-than read them."""

from __future__ import annotations

import re
from datetime import timedelta

from moltbot.errors import InputError

_AGE = re.compile(r"(?P<amount>\d+)\s*(?P<unit>[mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str, *, option: str) -> timedelta:
    """`90d` -> 90 days (units m, h, d, w).

    Raises:
        InputError: not a positive whole number followed by one of those units (the option is
            named, the text is not repeated).
    """
    match = _AGE.fullmatch(text.strip().lower())
    if match is None or int(match["amount"]) == 0:
        raise InputError(
            f"{option} must be a positive whole number with a unit m, h, d or w (e.g. 7d)"
        )
    return timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})
