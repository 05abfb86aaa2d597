"""The metrics page: a PNG of charts (matplotlib), the HTML page and markdown artifact around it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from moltbot.charts import korean_font
from moltbot.i18n import text_in
from moltbot.metrics import MetricsReport, display_cells, format_share
from moltbot.templating import render_template
from tasks.artifacts import data_uri

TEMPLATES = Path(__file__).parent / "templates"
_DPI = 100
_OK, _BAD, _GREY, _AMBER = "#5b9b6b", "#d9534f", "#9db4d3", "#e0a030"

_TEXTS = {
    "en": {
        "runs": "Runs that succeeded",
        "runs_of": "{share} of {runs:,}",
        "succeeded": "succeeded",
        "not_succeeded": "failed",
        "effects": "Effects",
        "done": "done",
        "already_done": "already done",
        "dead": "dead",
        "in_doubt": "in doubt",
        "hours": "Hours of work saved",
        "no_hours": "not configured\n([metrics.hours_saved])",
        "nothing": "Nothing recorded in this period",
    },
    "ko": {
        "runs": "실행 성공률",
        "runs_of": "{runs:,}회 중 {share}",
        "succeeded": "성공",
        "not_succeeded": "실패",
        "effects": "작업",
        "done": "완료",
        "already_done": "이미 완료",
        "dead": "실패(dead)",
        "in_doubt": "불확실",
        "hours": "절약 시간",
        "no_hours": "설정 없음\n([metrics.hours_saved])",
        "nothing": "이 기간에 기록된 것이 없습니다",
    },
}


def chart_texts(locale: str) -> dict[str, str]:
    """The charts' words in `locale` (English when it has none)."""
    return _TEXTS.get(locale, _TEXTS["en"])


def render_charts(report: MetricsReport, *, locale: str = "en") -> bytes:
    """Three bar charts side by side, one bar per automation: runs (succeeded or not),
    effects by outcome, hours saved. A standalone `Figure` (no pyplot state); PNG bytes."""
    texts = chart_texts(locale)
    font = korean_font()
    rows = report.automations
    height = 1.6 + 0.38 * max(len(rows), 1)
    figure = Figure(figsize=(11.0, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    if not rows:
        axes = figure.add_subplot()
        axes.axis("off")
        axes.text(0.5, 0.5, texts["nothing"], ha="center", va="center", fontproperties=font)
        return _png(figure)
    names = [m.automation for m in rows][::-1]
    positions = np.arange(len(names))
    runs_axes, effects_axes, hours_axes = figure.subplots(1, 3, sharey=True)

    # Shares, not counts: a check every minute would dwarf a report once a day.
    shares = [m.success_rate for m in rows][::-1]
    succeeded = np.array([100 * (share or 0.0) for share in shares])
    others = np.array([0.0 if share is None else 100 * (1 - share) for share in shares])
    runs_axes.barh(positions, succeeded, color=_OK, label=texts["succeeded"])
    runs_axes.barh(positions, others, left=succeeded, color=_BAD, label=texts["not_succeeded"])
    runs_axes.set_xlim(0, 100)
    runs_axes.xaxis.set_major_formatter(PercentFormatter())
    for position, metrics in zip(positions, rows[::-1], strict=True):
        runs_axes.annotate(
            texts["runs_of"].format(share=format_share(metrics.success_rate), runs=metrics.runs),
            xy=(2, position),
            va="center",
            fontsize=8,
            color="white" if metrics.success_rate else "#222",
            fontproperties=font,
        )
    _finish(runs_axes, texts["runs"], names, font)

    left = np.zeros(len(names))
    for status, color in (
        ("done", _OK),
        ("already_done", _GREY),
        ("dead", _BAD),
        ("in_doubt", _AMBER),
    ):
        values = np.array([m.effects[status] for m in rows][::-1], dtype=float)
        effects_axes.barh(positions, values, left=left, color=color, label=texts[status])
        left += values
    _finish(effects_axes, texts["effects"], names, font)

    hours = [m.hours_saved for m in rows][::-1]
    if all(value is None for value in hours):
        hours_axes.text(
            0.5, 0.5, texts["no_hours"], ha="center", va="center",
            transform=hours_axes.transAxes, fontsize=9, fontproperties=font,
        )  # fmt: skip
    hours_axes.barh(positions, [value or 0.0 for value in hours], color=_GREY)
    _finish(hours_axes, texts["hours"], names, font, legend=False)
    return _png(figure)


def _finish(axes: Axes, title: str, names: list[str], font: object, legend: bool = True) -> None:
    axes.set_yticks(np.arange(len(names)), names, fontsize=9)
    axes.set_title(title, loc="left", fontsize=11, fontproperties=font)
    axes.tick_params(axis="x", labelsize=8)
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if legend:
        axes.legend(
            prop=font, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, frameon=False
        )


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def page_context(
    report: MetricsReport, *, locale: str, timezone: str, chart: bytes
) -> dict[str, Any]:
    """What the page's and the artifact's templates show."""
    zone = ZoneInfo(timezone)
    totals = report.totals()
    return {
        "since": report.since.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "until": report.until.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "timezone": timezone,
        "totals": totals,
        "success": format_share(totals["success_rate"]),
        "columns": text_in("metrics_columns", locale),
        "rows": [display_cells(metrics, locale) for metrics in report.automations],
        "chart": data_uri(chart, "image/png"),
        "notes": report.notes,
    }


def render_page(report: MetricsReport, *, locale: str, timezone: str) -> str:
    """The self-contained HTML page: a summary first, the charts, then the table."""
    chart = render_charts(report, locale=locale)
    context = page_context(report, locale=locale, timezone=timezone, chart=chart)
    return render_template(TEMPLATES, locale, "page.html.j2", **context)


def render_markdown(report: MetricsReport, *, locale: str, timezone: str) -> str:
    """The same page as a markdown artifact (the chart embedded as a data URI)."""
    chart = render_charts(report, locale=locale)
    context = page_context(report, locale=locale, timezone=timezone, chart=chart)
    return render_template(TEMPLATES, locale, "page.md.j2", **context)
