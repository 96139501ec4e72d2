"""7.1 节的图：本书模型全部线性层权重的量化误差（SQNR）随位数与分组大小的变化。"""

from __future__ import annotations

from pathlib import Path

from ch01_economics.plot import save_figure


def plot_error_vs_bits(curves: dict[str, list[tuple[int, float]]], title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    for (label, points), marker in zip(curves.items(), "osD^v", strict=False):
        ax.plot([b for b, _ in points], [s for _, s in points], marker + "-", label=label)
    ax.set_xlabel("bits per weight (integer part)")
    ax.set_ylabel("SQNR (dB, higher is better)")
    ax.set_xticks(sorted({b for pts in curves.values() for b, _ in pts}))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out)
