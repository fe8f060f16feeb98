"""Figures (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import SpecError
from .sweep import Sweep, SweepRow


def sweep_figure(result: Sweep, path: Path) -> None:
    try:
        _sweep_figure(result, path)
    except OSError as exc:
        raise SpecError(f"{path}: cannot write ({exc.strerror or exc})", parameter="plot") from None


def _series(rows: list[SweepRow]) -> tuple[bool, list[list[SweepRow]]]:
    """Paired (G, E) rows are one series; a grid is one series per expansion ratio."""
    by_e: dict[float, list[SweepRow]] = {}
    for row in rows:
        by_e.setdefault(row.expansion_ratio, []).append(row)
    paired = all(len(v) == 1 for v in by_e.values())
    series = [rows] if paired else [v for _, v in sorted(by_e.items())]
    return paired, [sorted(s, key=lambda r: r.group_size) for s in series]


# (attribute, scale, y label, panel title, Table 2 column)
PANELS = (
    ("params", 1e6, "parameters (millions)", "Parameters", 0),
    ("macs", 1e9, "multiply-accumulates (billions)", "Compute per image (MACs, as Table 2's F)", 1),
    (
        "mean_intensity",
        1.0,
        "MACs per element of weights + input",
        "Arithmetic intensity, eq. (7), MAC-weighted mean",
        None,
    ),
)


def _panel(ax: Any, result: Sweep, key: str, scale: float, column: int | None) -> None:
    paired, series = _series(result.rows)
    for s in series:
        xs, ys = [r.group_size for r in s], [getattr(r, key) / scale for r in s]
        ax.plot(xs, ys, marker="o", label="archspec" if paired else f"archspec, E = {s[0].expansion_ratio:g}")
        if paired:
            for r, y in zip(s, ys):
                ax.annotate(
                    f"E={r.expansion_ratio:g}",
                    (r.group_size, y),
                    textcoords="offset points",
                    xytext=(5, -12),
                    fontsize=8,
                )
    marked = [r for r in result.rows if r.paper is not None]
    if column is not None and marked:
        ax.scatter(
            [r.group_size for r in marked],
            [r.paper[column] for r in marked if r.paper],
            marker="s",
            facecolors="none",
            edgecolors="black",
            s=60,
            zorder=3,
            label="paper, Table 2",
        )
    groups = sorted({r.group_size for r in result.rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(groups, [str(g) for g in groups])
    ax.set_xlabel("group size G of the spatial convs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _sweep_figure(result: Sweep, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110)
    for ax, (key, scale, label, title, column) in zip(axes, PANELS):
        _panel(ax, result, key, scale, column)
        ax.set_ylabel(label)
        ax.set_title(title if key != "mean_intensity" else f"{title} (batch {result.batch_size})", fontsize=10)
    groups = sorted({r.group_size for r in result.rows})
    how = "E paired with G (Table 2 style)" if _series(result.rows)[0] else "every combination of G and E"
    fig.suptitle(
        f"{result.name} at {result.resolution} px: G = {groups[0]} to {groups[-1]}, {how}; "
        f"group_rounding {result.group_rounding}, mid_channel_rounding {result.mid_channel_rounding}"
    )
    fig.tight_layout()
    fig.savefig(path, format="png")  # what --plot promises, whatever the file's name says
    plt.close(fig)
