"""8.5 节的图：每次目标前向产出的 token 数、墙钟加速比随 γ 的变化，本机实测。"""

from __future__ import annotations

from pathlib import Path

from ch01_economics.plot import save_figure


def plot_sweep(rows: list[dict], title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    names = list(dict.fromkeys(r["name"] for r in rows))
    for name, marker in zip(names, "osD^v<>", strict=False):
        pts = [r for r in rows if r["name"] == name]
        g = [r["gamma"] for r in pts]
        a.plot(g, [r["tokens_per_step"] for r in pts], marker + "-", label=f"{name} (measured)")
        b.plot(g, [r["speedup"] for r in pts], marker + "-", label=name)
    a.set_xlabel("gamma (draft tokens per step)")
    a.set_ylabel("tokens per target forward")
    b.set_xlabel("gamma (draft tokens per step)")
    b.set_ylabel("wall-clock speedup vs. plain decoding")
    b.axhline(1.0, color="grey", lw=0.8, ls="--")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)
