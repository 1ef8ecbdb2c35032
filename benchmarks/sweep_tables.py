"""The sweep's tables: per-cell mean / sd / min / max over seeds, every cell against the best
and every pair of cells with differences paired by seed, the plots and the verdict lines of
the README (benchmarks/sweep.py writes them)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def cell_slug(cell: dict) -> str:
    """A run-folder name for a cell: `key=value` of the swept keys (`base` when none)."""
    parts = [f"{k}={':'.join(map(str, v)) if isinstance(v, tuple) else v}"
             for k, v in cell.items()]
    return "_".join(parts).replace("/", "-") or "base"


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean and sd of the per-seed differences a - b, and the two-sided paired t-test p."""
    d = a - b
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    if len(d) < 2:
        p = float("nan")
    elif sd == 0:
        p = 1.0 if d.mean() == 0 else 0.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return float(d.mean()), sd, p


def summarise(runs: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table: a row per cell, pairs: every pair of cells), differences paired by seed."""
    group = keys or (lambda _: "base")
    rows, per_cell = [], {}
    for cell, g in runs.groupby(group, sort=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        g = g.sort_values("seed")
        per_cell[cell] = g.set_index("seed")["top1"]
        rows.append({**dict(zip(keys, cell)), "seeds": len(g),
                     "top1_mean": g.top1.mean(), "top1_sd": g.top1.std(ddof=1),
                     "top1_min": g.top1.min(), "top1_max": g.top1.max(),
                     "top5_mean": g.top5.mean(), "mean_class_acc_mean": g.mean_class_acc.mean(),
                     "val_top1_mean": g.val_top1.mean()})
    table = pd.DataFrame(rows)
    cells = list(per_cell)
    best = cells[int(table.top1_mean.values.argmax())]
    pairs = []
    for a, b in itertools.combinations(cells, 2):
        sa, sb = per_cell[a].align(per_cell[b], join="inner")
        mean, sd, p = paired(sa.values, sb.values)
        pairs.append({"a": cell_slug(dict(zip(keys, a))), "b": cell_slug(dict(zip(keys, b))),
                      "seeds": len(sa), "diff_mean": mean, "diff_sd": sd, "p_paired_t": p})
    vs_best = []
    for cell in cells:
        sa, sb = per_cell[cell].align(per_cell[best], join="inner")
        mean, sd, p = paired(sa.values, sb.values)
        vs_best.append((mean, sd, p, int((sa.values < sb.values).sum())))
    table["diff_vs_best"] = [v[0] for v in vs_best]
    table["diff_sd"] = [v[1] for v in vs_best]
    table["p_vs_best"] = [v[2] for v in vs_best]
    table["seeds_below_best"] = [v[3] for v in vs_best]
    return table.round(2).assign(p_vs_best=table.p_vs_best.round(4)), pd.DataFrame(pairs).round(4)


def plot(table: pd.DataFrame, keys: list[str], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for key in keys or ["base"]:
        others = [k for k in keys if k != key]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        groups = table.groupby(others, sort=False) if others else [((), table)]
        for label, g in groups:
            label = label if isinstance(label, tuple) else (label,)
            x = np.arange(len(g)) if key == "base" else [str(v) for v in g[key]]
            name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, label))
            ax.errorbar(x, g.top1_mean, yerr=g.top1_sd.fillna(0), marker="o", capsize=4,
                        label=name or None)
        ax.set_xlabel(key)
        ax.set_ylabel("test top-1 % (mean ± sd over seeds)")
        if others:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"top1_by_{key.split('.')[-1] if key != 'base' else 'cell'}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def verdicts(table: pd.DataFrame, keys: list[str], alpha: float = 0.05) -> list[str]:
    """One line per cell: is its difference to the best cell larger than the seed spread?"""
    best_at = int(table.top1_mean.values.argmax())
    best = table.iloc[best_at]
    name = lambda row: ", ".join(f"{k.split('.')[-1]}={row[k]}" for k in keys) or "base"  # noqa: E731
    lines = [f"- best mean top-1: **{name(best)}** ({best.top1_mean:.2f} %, sd "
             f"{best.top1_sd:.2f})"]
    for i, (_, row) in enumerate(table.iterrows()):
        if i == best_at:
            continue
        p = row.p_vs_best
        beyond = p == p and p < alpha
        lines.append(f"- {name(row)}: {row.diff_vs_best:+.2f} points (sd of the paired "
                     f"difference {row.diff_sd:.2f}, p = {p:.3g}, below the best on "
                     f"{row.seeds_below_best} of {row.seeds} seeds): "
                     + ("**beyond the seed spread**" if beyond else "within the seed spread"))
    return lines
