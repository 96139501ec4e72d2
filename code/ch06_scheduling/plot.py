"""第 6 章的两张图：批处理时间线（静态 vs 连续，横轴是迭代步）与 PD 分离 vs 混合部署。"""

from __future__ import annotations

from pathlib import Path

from ch01_economics.plot import save_figure

from .engine import StepRecord

COLORS = {"prefill": "#4C72B0", "decode": "#55A868", "pad": "#DDDDDD"}


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    return plt


def plot_timelines(runs: dict[str, list[StepRecord]], num_requests: int, out: Path) -> Path:
    """每行一个请求，每列一个迭代步。

    蓝色 prefill、绿色 decode，灰色是静态批里已经完成、却仍占着位置的行。
    """
    plt = _setup()
    fig, axes = plt.subplots(
        len(runs), 1, figsize=(8, 1.2 + 0.28 * num_requests * len(runs)), dpi=100, sharex=True
    )
    for ax, (title, steps) in zip(axes, runs.items(), strict=True):
        members: set[int] = set()
        for x, step in enumerate(steps):
            ids = {rid for rid, _, _ in step.items}
            if all(phase == "prefill" for _, _, phase in step.items):
                members = ids  # 静态批的第一步：这一批的全部成员
            for rid, _, phase in step.items:
                ax.barh(rid, 1, left=x, color=COLORS[phase], edgecolor="white", linewidth=0.3)
            if step.padded_tokens:
                for rid in members - ids:
                    ax.barh(rid, 1, left=x, color=COLORS["pad"], edgecolor="white", linewidth=0.3)
        ax.set_title(f"{title}: {len(steps)} steps", fontsize=10, loc="left")
        ax.set_ylabel("request")
        ax.invert_yaxis()
    axes[-1].set_xlabel("iteration (one forward pass)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    axes[0].legend(
        handles, ["prefill", "decode", "padding / idle slot"], fontsize=8, loc="upper right"
    )
    return save_figure(fig, out)


def plot_pd(rows: list[tuple[float, dict, dict]], title: str, out: Path) -> Path:
    """rows：(到达率, 混合部署的指标, PD 分离的指标)。左 TTFT p90，右 TPOT p90。"""
    plt = _setup()
    rates = [r for r, _, _ in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=100)
    for ax, key, label in (
        (left, "ttft_p90", "TTFT p90 (s)"),
        (right, "tpot_p90", "TPOT p90 (ms)"),
    ):
        scale = 1e3 if key.startswith("tpot") else 1
        ax.plot(rates, [c[key] * scale for _, c, _ in rows], "o-", label="colocated (2 x both)")
        ax.plot(rates, [p[key] * scale for _, _, p in rows], "s-", label="disaggregated (1P + 1D)")
        ax.set_xlabel("arrival rate (req/s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)
