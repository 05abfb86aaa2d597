"""The benchmark's outputs: the rich table, bench/RESULTS.md and the bar chart bench/results.png."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.measure import Figure

_MET = {True: "yes", False: "NO", None: "—"}


def table(figures: Sequence[Figure]) -> Table:
    """Figure, measured, target, met? — one row per figure, grouped."""
    view = Table(title="python -m bench", show_lines=False)
    for column in ("group", "figure", "measured", "target", "met?"):
        view.add_column(column, overflow="fold")
    for figure in figures:
        met = {True: "[green]yes[/]", False: "[red]NO[/]", None: "—"}[figure.met]
        view.add_row(figure.group, figure.name, figure.measured, figure.target, met)
    return view


def print_table(figures: Sequence[Figure], console: Console) -> None:
    console.print(table(figures))


def write_markdown(
    figures: Sequence[Figure],
    *,
    machine: dict[str, str],
    mode: str,
    elapsed_s: float,
    path: Path,
    chart: Path,
) -> None:
    """RESULTS.md: when and where, then the table with notes, then the chart."""
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench{' --quick' if mode == 'quick' else ''}` "
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({mode} run, {elapsed_s / 60:.1f} min). "
        "Every time is the median of at least 5 runs after a warm-up; every ratio is taken in "
        "the same run, pair by pair. This machine is shared with other jobs: absolute times "
        "are noisy, ratios less so.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine.items()),
        "",
        "| group | figure | measured | target | met? | notes |",
        "|---|---|---|---|---|---|",
        *(
            f"| {f.group} | {_cell(f.name)} | {_cell(f.measured)} | {_cell(f.target)} "
            f"| {_MET[f.met]} | {_cell(f.note)} |"
            for f in figures
        ),
        "",
        f"![measured against target]({chart.name})",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_chart(figures: Sequence[Figure], path: Path) -> None:
    """Two panels: each target figure as measured ÷ target (1 = the target), and the ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targeted = [f for f in figures if f.ratio is not None and f.target_ratio]
    ratios = [f for f in figures if f.ratio is not None and not f.target_ratio]
    rows = [max(len(targeted), 1), max(len(ratios), 1)]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(11, 0.42 * sum(rows) + 2.5),
        gridspec_kw={"height_ratios": rows},
        constrained_layout=True,
    )

    def share(figure: Figure) -> float:
        # Lower is better: measured / target; higher is better: target / measured. Below 1: met.
        assert figure.ratio is not None and figure.target_ratio
        if figure.lower_is_better:
            return figure.ratio / figure.target_ratio
        return figure.target_ratio / figure.ratio if figure.ratio else float("inf")

    def bars(axes: Any, chosen: list[Figure], values: list[float], colours: list[str]) -> None:
        drawn = axes.barh([_short(f.name) for f in chosen], values, color=colours)
        axes.bar_label(drawn, labels=[f"{value:.2f}" for value in values], padding=3)
        axes.axvline(1, color="black", linestyle="--", linewidth=1)
        axes.invert_yaxis()
        axes.margins(x=0.15)

    if targeted:
        colours = ["tab:green" if f.met else "tab:red" for f in targeted]
        bars(top, targeted, [share(f) for f in targeted], colours)
    top.set_title("Against the target: measured ÷ target (1 = the target; below 1 is met)")
    top.set_xlabel("for figures where higher is better (acknowledgements/s): target ÷ measured")
    if ratios:
        bars(bottom, ratios, [f.ratio or 0.0 for f in ratios], ["tab:blue"] * len(ratios))
    bottom.set_title("Comparisons measured in the same run (× the baseline)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(name: str, width: int = 60) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
