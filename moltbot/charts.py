"""What every chart moltbot draws shares: the font that shows Hangul."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from matplotlib.font_manager import FontProperties


@cache
def korean_font() -> FontProperties | None:
    """NanumGothic from the `koreanize-matplotlib` package: Hangul on any machine.

    Its file is used directly, without importing the package, which would change matplotlib's
    global defaults for the whole process. None (matplotlib's default font) when it is missing.
    """
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "NanumGothic.ttf"
    return FontProperties(fname=path) if path.is_file() else None
