"""8.5 节的图：接受率 α、每次目标前向产出的 token 数、墙钟加速比随 γ 的变化，本机实测。"""

from __future__ import annotations

from pathlib import Path

from ch01_economics.plot import save_figure

from .speculative import expected_tokens_per_step


def plot_sweep(rows: list[dict], title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    fig, (a, t, s) = plt.subplots(1, 3, figsize=(12, 4.0), dpi=100)
    names = list(dict.fromkeys(r["name"] for r in rows))
    for name, marker in zip(names, "osD^v<>", strict=False):
        pts = [r for r in rows if r["name"] == name]
        g = [r["gamma"] for r in pts]
        line = a.plot(g, [r["alpha"] for r in pts], marker + "-", label=name)[0]
        t.plot(
            g,
            [r["tokens_per_step"] for r in pts],
            marker + "-",
            color=line.get_color(),
            label=f"{name} measured",
        )
        t.plot(
            g,
            [expected_tokens_per_step(r["alpha"], r["gamma"]) for r in pts],
            ":",
            color=line.get_color(),
        )
        s.plot(g, [r["speedup"] for r in pts], marker + "-", color=line.get_color(), label=name)
    a.set_ylabel("acceptance rate alpha")
    t.set_ylabel("tokens per target forward (dotted: formula)")
    s.set_ylabel("wall-clock speedup vs. plain decoding")
    s.axhline(1.0, color="grey", lw=0.8, ls="--")
    for ax in (a, t, s):
        ax.set_xlabel("gamma (draft tokens per step)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)
