"""``python -m ch01_economics``：第 1 章的成本与 ROI 计算器。

不带子命令时运行一个带标注假设的演示；每个子命令对应书中的一个公式。
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .cost import cost_per_million_tokens
from .decline import annual_factor, decline_per_year, doubling_time
from .human import cost_ratio, human_equivalents, human_tokens_per_day
from .prices import load_price_series
from .roi import breakeven_tokens_per_month, optimization_payback


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"需要一个数字，收到 {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"需要正数，收到 {text!r}")
    return value


def fraction(text: str) -> float:
    value = positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"需要 (0, 1] 之间的比例，收到 {text!r}")
    return value


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"需要正整数，收到 {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"需要正整数，收到 {text!r}")
    return value


def hours_per_day(text: str) -> float:
    value = positive(text)
    if value > 24:
        raise argparse.ArgumentTypeError(f"一天最多 24 小时，收到 {text!r}")
    return value


def fmt_tokens(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def cmd_cost(args: argparse.Namespace) -> None:
    usd = cost_per_million_tokens(
        args.gpu_hourly_usd,
        args.tokens_per_sec,
        num_gpus=args.num_gpus,
        utilization=args.utilization,
    )
    print(
        f"{args.num_gpus} × GPU @ ${args.gpu_hourly_usd:g}/h，满载 {args.tokens_per_sec:g} tok/s，"
        f"利用率 {args.utilization:.0%}"
    )
    print(f"每百万 token 成本：${usd:.4f}")


def cmd_breakeven(args: argparse.Namespace) -> None:
    breakeven, capacity = breakeven_tokens_per_month(
        args.api_usd_per_m, args.gpu_hourly_usd, args.num_gpus, args.tokens_per_sec
    )
    print(f"盈亏平衡月用量：{fmt_tokens(breakeven)} token")
    print(f"单实例满载月产能：{fmt_tokens(capacity)} token")
    if breakeven > capacity:
        print("平衡点超过单实例产能：这个 API 价格下，自建实例即使跑满也比 API 贵。")
    else:
        print(f"月用量超过 {fmt_tokens(breakeven)} token 时自建更便宜。")


def cmd_roi(args: argparse.Namespace) -> None:
    result = optimization_payback(args.monthly_gpu_usd, args.speedup, args.engineering_usd)
    print(f"每月节省：${result.monthly_saving_usd:,.0f}")
    print(f"回本周期：{result.payback_months:.1f} 个月")
    print(f"12 个月 ROI：{result.roi_12_months:.0%}")


def cmd_decline(args: argparse.Namespace) -> None:
    factor = annual_factor(args.start_price, args.end_price, args.years)
    total = args.start_price / args.end_price
    print(f"{args.years:g} 年共下降 {total:,.1f} 倍")
    print(f"= 每年下降 {factor:.2f} 倍 = 每年降价 {decline_per_year(factor):.1%}")


def cmd_growth(args: argparse.Namespace) -> None:
    for rate in args.rates:
        print(f"年增长 {rate:.1%} -> 翻一番需 {doubling_time(rate):.1f} 年")


def cmd_human(args: argparse.Namespace) -> None:
    if (args.hourly_usd is None) != (args.model_usd_per_m is None):
        raise ValueError("成本口径需要同时给出 --hourly-usd 和 --model-usd-per-m")
    per_day = human_tokens_per_day(args.tokens_per_minute, args.hours)
    print(
        f"人：每分钟 {args.tokens_per_minute:g} token × {args.hours:g} 小时"
        f" = {per_day:,.0f} token/天"
    )
    if args.machine_tokens_per_sec:
        ratio = human_equivalents(args.machine_tokens_per_sec, per_day)
        print(f"产量口径：{args.machine_tokens_per_sec:,.0f} tok/s 全天运行 = {ratio:,.0f} 人")
    if args.hourly_usd and args.model_usd_per_m:
        ratio = cost_ratio(args.hourly_usd, args.tokens_per_minute, args.model_usd_per_m)
        human_usd = args.hourly_usd / (args.tokens_per_minute * 60) * 1e6
        print(
            f"成本口径：人 ${human_usd:,.2f} / 1M tokens，"
            f"模型 ${args.model_usd_per_m:g} / 1M tokens -> {ratio:,.0f} 倍"
        )


def cmd_prices(_: argparse.Namespace) -> None:
    for s in load_price_series():
        span = s.years(len(s.prices) - 1)
        print(f"{s.label}")
        for month, price, model in zip(s.months, s.prices, s.models, strict=True):
            print(f"  {month:%Y-%m}  ${price:>6g} / 1M tokens  {model}")
        total = s.prices[0] / s.prices[-1]
        print(f"  {span:.2f} 年下降 {total:,.0f} 倍 = 每年 {s.annual_factor():.1f} 倍")
        print(f"  来源：{s.source}")


def cmd_plot(args: argparse.Namespace) -> None:
    from .plot import plot_price_decline

    print(f"已写入 {plot_price_decline(args.out)}")


# 演示用的模型价格（美元 / 百万 token），出处见书中 1.1 节脚注。DeepSeek-R1 与 o1-preview
# 按输入:输出 3:1 加权；Llama 3.2 3B 是 a16z 取的输入、输出平均价。
DEMO_MODEL_PRICES = {
    "Llama 3.2 3B（a16z, 2024-11）": 0.06,
    "DeepSeek-R1 首发价（2025-01）": 0.96,
    "OpenAI o1-preview（2024-09）": 26.25,
}


def cmd_demo(_: argparse.Namespace) -> None:
    """演示：每个数字都是下面写明的假设代入公式算出的，不是测量值。"""
    print("== 人类当量（成本口径）：人写 100 万 token 的成本 / 模型价格 ==")
    print("假设：人每分钟输出 200 token；两列倍数分别对应时薪 $10 与 $50")
    for model, price in DEMO_MODEL_PRICES.items():
        ratios = [cost_ratio(wage, 200, price) for wage in (10, 50)]
        print(f"  ${price:>6g}  {ratios[0]:>8,.0f} 倍  {ratios[1]:>8,.0f} 倍  {model}")
    print()
    print("== 每百万 token 的 GPU 成本 ==")
    print("假设：单卡 $2.00/h，利用率 50%，满载吞吐如下")
    for tps in (500, 2_000, 8_000):
        usd = cost_per_million_tokens(2.0, tps, utilization=0.5)
        print(f"  {tps:>5} tok/s -> ${usd:.3f} / 1M tokens")
    print()
    print("== 同等能力下的价格下降（有出处的价格点）==")
    for s in load_price_series():
        print(f"  {s.label}: 每年 {s.annual_factor():.1f} 倍")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ch01_economics",
        description="第 1 章：推理成本、盈亏平衡、优化 ROI 与价格下降的计算器。"
        "不带子命令时运行演示。",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("cost", help="每百万 token 的 GPU 成本")
    p.add_argument("--gpu-hourly-usd", type=positive, required=True, help="单卡每小时价格（美元）")
    p.add_argument(
        "--tokens-per-sec", type=positive, required=True, help="实例满载吞吐（token/s，实测或假设）"
    )
    p.add_argument("--num-gpus", type=count, default=1, help="实例占用的 GPU 数（默认 1）")
    p.add_argument(
        "--utilization", type=fraction, default=1.0, help="满载时间占比 (0, 1]（默认 1）"
    )
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("breakeven", help="自建 vs API 的盈亏平衡月用量")
    p.add_argument(
        "--api-usd-per-m", type=positive, required=True, help="API 价格（美元/百万 token）"
    )
    p.add_argument("--gpu-hourly-usd", type=positive, required=True, help="单卡每小时价格（美元）")
    p.add_argument("--num-gpus", type=count, default=1, help="实例占用的 GPU 数（默认 1）")
    p.add_argument("--tokens-per-sec", type=positive, required=True, help="实例满载吞吐（token/s）")
    p.set_defaults(func=cmd_breakeven)

    p = sub.add_parser("roi", help="一次推理优化的回本周期")
    p.add_argument(
        "--monthly-gpu-usd", type=positive, required=True, help="当前每月 GPU 费用（美元）"
    )
    p.add_argument("--speedup", type=positive, required=True, help="优化带来的吞吐倍数（> 1）")
    p.add_argument("--engineering-usd", type=positive, required=True, help="优化的工程投入（美元）")
    p.set_defaults(func=cmd_roi)

    p = sub.add_parser("decline", help="由起止价格求年化下降倍数")
    p.add_argument("--start-price", type=positive, required=True, help="起始价格")
    p.add_argument("--end-price", type=positive, required=True, help="结束价格")
    p.add_argument("--years", type=positive, required=True, help="经过的年数")
    p.set_defaults(func=cmd_decline)

    p = sub.add_parser("growth", help="年增长率对应的翻倍时间")
    p.add_argument("rates", type=positive, nargs="+", help="年增长率，如 0.02 表示 2%%")
    p.set_defaults(func=cmd_growth)

    p = sub.add_parser("human", help="人类当量：产量口径与成本口径")
    p.add_argument(
        "--tokens-per-minute",
        type=positive,
        default=200.0,
        help="人每分钟输出的 token 数（默认 200）",
    )
    p.add_argument("--hours", type=hours_per_day, default=8.0, help="人每天工作小时数（默认 8）")
    p.add_argument(
        "--machine-tokens-per-sec", type=positive, help="机器满载吞吐（token/s），给出则算产量口径"
    )
    p.add_argument(
        "--hourly-usd",
        type=positive,
        help="人的时薪（美元），与 --model-usd-per-m 一起给出则算成本口径",
    )
    p.add_argument("--model-usd-per-m", type=positive, help="模型价格（美元 / 百万 token）")
    p.set_defaults(func=cmd_human)

    p = sub.add_parser("prices", help="列出有出处的历史价格点及年化下降倍数")
    p.set_defaults(func=cmd_prices)

    p = sub.add_parser("plot", help="画同等能力下的价格下降图（书中 1.4 节）")
    p.add_argument("--out", type=Path, required=True, help="输出文件（.svg 或 .png）")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_demo)
    try:
        func(args)
    except ValueError as exc:  # 参数组合不合理（例如 speedup <= 1）
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
