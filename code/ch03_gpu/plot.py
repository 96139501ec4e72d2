"""3.5 节的 Roofline 图：横轴算术强度，纵轴可达算力，双对数坐标。

SVG 固定随机盐与元数据，同一版本 matplotlib 每次生成的文件逐字节相同（书中的图由测试重新生成核对）。
"""

from __future__ import annotations

from pathlib import Path

from ch01_economics.plot import save_figure

from .roofline import BOUND_ZH, Hardware, Verdict


# --8<-- [start:plot]
def plot_roofline(hw: Hardware, verdicts: list[Verdict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    ridge = hw.peak_tflops * 1e12 / (hw.bandwidth_gbps * 1e9)  # FLOP/byte
    xs = np.logspace(-1, 5, 200)
    roof = np.minimum(hw.peak_tflops, xs * hw.bandwidth_gbps * 1e9 / 1e12)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    ax.loglog(xs, roof, color="black", lw=2, label=f"{hw.name} roofline")
    ax.axvline(ridge, color="gray", ls="--", lw=1)
    ax.annotate(
        f"ridge = {ridge:.0f} FLOP/B",
        (ridge, hw.peak_tflops / 30),
        ha="left",
        fontsize=8,
        xytext=(4, 0),
        textcoords="offset points",
    )
    for v in verdicts:
        w = v.workload
        ax.plot(w.intensity, v.attainable_tflops, "o", ms=7)
        tag = {"compute": "compute", "memory": "memory", "overhead": "overhead"}[v.bound]
        ax.annotate(
            f"{w.name}\n{w.intensity:.0f} FLOP/B, {tag}-bound",
            (w.intensity, v.attainable_tflops),
            xytext=(6, -22),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attainable TFLOPS")
    ax.set_ylim(hw.peak_tflops / 1e4, hw.peak_tflops * 3)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, out)  # 第 1 章的同名函数：固定元数据，SVG 可逐字节复现
    # --8<-- [end:plot]


__all__ = ["BOUND_ZH", "plot_roofline"]
