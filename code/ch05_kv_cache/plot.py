"""5.6 节的图：每生成一个 token 的耗时随上下文长度的变化（朴素重算 vs KV Cache），本机实测。"""

from __future__ import annotations

from pathlib import Path

from ch01_economics.plot import save_figure


def plot_step_times(rows: list[tuple[int, float, float]], title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    lengths = [n for n, _, _ in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    ax.plot(lengths, [t * 1e3 for _, t, _ in rows], "o-", label="recompute (no cache)")
    ax.plot(lengths, [t * 1e3 for _, _, t in rows], "s-", label="KV cache")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("time per generated token (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out)
