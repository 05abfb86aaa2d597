"""The daily report's revenue chart: a PNG bar chart of recent daily revenue (no I/O)."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from moltbot.charts import korean_font

# Currencies without a minor unit: their axis shows whole numbers only.
ZERO_DECIMAL_CURRENCIES = frozenset({"KRW", "JPY", "VND", "CLP", "ISK", "HUF", "TWD"})

_WIDTH_IN, _HEIGHT_IN, _DPI = 8.0, 3.6, 100  # 800 x 360 px
_BAR_COLOR = "#9db4d3"
_HIGHLIGHT_COLOR = "#d9534f"
_MAX_DATE_LABELS = 10

_TEXTS = {
    "en": {"title": "Revenue, last 28 days", "highlighted": "report day {day} highlighted"},
    "ko": {"title": "최근 28일 매출", "highlighted": "보고일 {day} 강조"},
}


def chart_texts(locale: str) -> dict[str, str]:
    """The chart's words in `locale` (English when it has none)."""
    return _TEXTS.get(locale, _TEXTS["en"])


def render_revenue_chart(
    series: pd.Series,
    *,
    report_date: date,
    currency: str = "KRW",
    locale: str = "en",
) -> bytes:
    """Draw daily revenue as bars, the report day highlighted, and return it as PNG bytes.

    Uses a standalone ``Figure`` with the Agg canvas rather than pyplot, so concurrent flow runs
    in threads neither share nor leak global figure state.

    Args:
        series: revenue per day, indexed by date (as returned by ``daily_revenue``).
        report_date: the day to highlight and label with its value.
        currency: ISO code shown on the y axis; decides whether ticks show decimals.
        locale: language of the title and labels (`en` or `ko`; Hangul in a bundled font).

    Returns:
        A PNG image of about 800 x 360 pixels.
    """
    days = [pd.Timestamp(day).date() for day in series.index]
    values = pd.to_numeric(series, errors="coerce").fillna(0.0).to_numpy(dtype="float64")
    whole = currency.upper() in ZERO_DECIMAL_CURRENCIES

    figure = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = np.arange(len(days))
    colors = [_HIGHLIGHT_COLOR if day == report_date else _BAR_COLOR for day in days]
    axes.bar(positions, values, color=colors, width=0.8)

    texts = chart_texts(locale)
    _label_dates(axes, days, report_date, texts["highlighted"])
    _format_amount_axis(axes, values, currency=currency.upper(), whole=whole)
    _annotate_report_day(axes, days, values, report_date, whole=whole)
    axes.set_title(texts["title"], loc="left", fontsize=11, fontproperties=korean_font())
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _amount(value: float, *, whole: bool) -> str:
    return f"{value:,.0f}" if whole else f"{value:,.2f}"


def _label_dates(axes: Axes, days: list[date], report_date: date, highlighted: str) -> None:
    """Label about ten evenly spaced days, counted back from the last so it is always labelled."""
    step = max(1, -(-len(days) // _MAX_DATE_LABELS))
    ticks = sorted(set(range(len(days) - 1, -1, -step)))
    axes.set_xticks(ticks, [days[i].strftime("%m-%d") for i in ticks], fontsize=8)
    if days:
        axes.set_xlim(-0.6, len(days) - 0.4)
    axes.set_xlabel(
        highlighted.format(day=report_date.isoformat()), fontsize=8, fontproperties=korean_font()
    )


def _format_amount_axis(axes: Axes, values: np.ndarray, *, currency: str, whole: bool) -> None:
    # An all-zero series would otherwise get a (-0.05, 0.05) range with fractional ticks.
    top = float(values.max()) if values.size else 0.0
    axes.set_ylim(0, top * 1.15 if top > 0 else 1)
    # Cents on the axis only help when the amounts are small; one format for every tick.
    whole_ticks = whole or top >= 10
    axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=whole_ticks))
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda value, _pos: _amount(value, whole=whole_ticks))
    )
    axes.set_ylabel(currency, fontsize=9)
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)


def _annotate_report_day(
    axes: Axes, days: list[date], values: np.ndarray, report_date: date, *, whole: bool
) -> None:
    if report_date not in days:
        return
    position = days.index(report_date)
    value = float(values[position])
    axes.annotate(
        _amount(value, whole=whole),
        xy=(position, value),
        xytext=(0, 3),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=8,
        color=_HIGHLIGHT_COLOR,
    )
