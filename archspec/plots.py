"""Figures (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from pathlib import Path

from .errors import SpecError
from .sweep import SweepRow


def sweep_figure(rows: list[SweepRow], title: str, path: Path, batch_size: int) -> None:
    try:
        _sweep_figure(rows, title, path, batch_size)
    except OSError as exc:
        raise SpecError(f"{path}: cannot write ({exc.strerror or exc})", parameter="plot") from None


def _sweep_figure(rows: list[SweepRow], title: str, path: Path, batch_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_m, ax_i) = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110)
    by_e: dict[float, list[SweepRow]] = {}
    for row in rows:
        by_e.setdefault(row.expansion_ratio, []).append(row)
    paired = all(len(v) == 1 for v in by_e.values())
    series = (
        [sorted(rows, key=lambda r: r.group_size)]
        if paired
        else [sorted(v, key=lambda r: r.group_size) for _, v in sorted(by_e.items())]
    )
    for ax, key, label in ((ax_p, "params", "parameters (M)"), (ax_m, "macs", "MACs (G)")):
        scale = 1e6 if key == "params" else 1e9
        for s in series:
            xs = [r.group_size for r in s]
            ys = [getattr(r, key) / scale for r in s]
            ax.plot(xs, ys, marker="o", label=None if paired else f"E = {s[0].expansion_ratio:g}")
            if paired:
                for r, y in zip(s, ys):
                    ax.annotate(
                        f"E={r.expansion_ratio:g}",
                        (r.group_size, y),
                        textcoords="offset points",
                        xytext=(4, 6),
                        fontsize=8,
                    )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r.group_size for r in rows}), [str(g) for g in sorted({r.group_size for r in rows})])
        ax.set_xlabel("group size G")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if not paired:
            ax.legend(fontsize=8)
    for row in rows:
        ax_i.plot(
            range(len(row.intensities)),
            row.intensities,
            lw=1.2,
            label=f"G{row.group_size} E{row.expansion_ratio:g} (mean {row.mean_intensity:.0f})",
        )
    ax_i.set_yscale("log")
    ax_i.set_xlabel("conv layer (forward order)")
    ax_i.set_ylabel(f"arithmetic intensity, eq. (7), B={batch_size}")
    ax_i.grid(alpha=0.3, which="both")
    ax_i.legend(fontsize=7)
    ax_p.set_title("parameters")
    ax_m.set_title("multiply-accumulates")
    ax_i.set_title("arithmetic intensity per conv")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
