"""书中 1.4 节的图：同等能力下 LLM 推理价格的下降（对数纵轴）。

实线是出处明确的价格点（``data/price_points.yml``），虚线是“每年 10 倍”的参照线；
图上的倍数由 ``decline.annual_factor`` 算出，不手填。输出 SVG 时固定元数据与随机盐，
同一版本的 matplotlib 每次生成的文件逐字节相同，测试据此检查书中的图与代码一致。
"""

from datetime import timedelta
from pathlib import Path

from .decline import project_prices
from .prices import load_price_series


# --8<-- [start:plot]
def plot_price_decline(out: Path, reference_factor: float = 10.0) -> Path:
    """画出各价格序列及“每年 ``reference_factor`` 倍”的参照线，保存为 ``out``。"""
    import matplotlib

    matplotlib.use("Agg")  # 无显示器环境也能出图
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "llm-inference-book"
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    series = load_price_series()
    for k, s in enumerate(series):
        label = f"{s.label}: {s.annual_factor():.0f}x / year"
        (line,) = ax.plot(s.months, s.prices, marker="o", label=label)
        for i, (month, price, model) in enumerate(zip(s.months, s.prices, s.models, strict=True)):
            last = i == len(s.prices) - 1
            ax.annotate(
                model,
                (month, price),
                textcoords="offset points",
                xytext=(-8, (6 if k % 2 else -12) if last else 4),
                ha="right" if last else "left",
                fontsize=7,
                color=line.get_color(),
            )
    # 参照线：从最晚开始的序列起点出发，按每年 reference_factor 倍下降
    start = max(series, key=lambda s: s.months[0])
    years = 2
    ref = project_prices(start.prices[0], reference_factor, years)
    ref_months = [start.months[0] + timedelta(days=365.25 * y) for y in range(years + 1)]
    ax.plot(ref_months, ref, "--", color="gray", label=f"reference: {reference_factor:g}x / year")
    ax.set_yscale("log")
    ax.set_ylim(0.03, 150)
    ax.set_ylabel("USD per 1M tokens (log scale)")
    ax.set_title("LLM inference price at constant capability")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.autofmt_xdate()
    return save_figure(fig, out)


# --8<-- [end:plot]


def save_figure(fig, out: Path) -> Path:
    """保存并关闭图。SVG 不写日期元数据，配合固定的 svg.hashsalt，同样的图每次逐字节相同。"""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Date": None} if out.suffix == ".svg" else {})
    plt.close(fig)
    return out
