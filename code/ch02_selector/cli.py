"""``python -m ch02_selector``：按模型、硬件和延迟目标给出优化建议。

例：70B 稠密模型、单张 80 GB 卡、每 token p99 目标 200 ms
    python -m ch02_selector --params 70e9 --gpu-mem-gb 80 --p99-latency-ms 200
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from .estimates import decode_floor_ms, expert_coverage, prefill_ms, weight_gb
from .gpus import GPUS
from .selector import Scenario, recommend


def number(kind: str, *, integer: bool = False, upper: float | None = None):
    """argparse 的类型函数：正数（可选整数、上限），错误信息说清楚要什么。"""

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{kind}需要{'整数' if integer else '数字'}，收到 {text!r}"
            ) from None
        if not math.isfinite(value) or value <= 0 or (upper is not None and value > upper):
            bound = f"(0, {upper:g}]" if upper is not None else "正数"
            raise argparse.ArgumentTypeError(f"{kind}必须是{bound}，收到 {text!r}")
        return value

    return parse


def run_subcommand(build_parser, default: str, argv: list[str] | None) -> int:
    """第 5 章起各章命令行的共同入口：不给子命令时运行 ``default``；
    模型目录不对、参数组合不成立（OSError、ValueError、KeyError）时打印一行“错误：…”退出，不抛调用栈。
    """
    args = build_parser().parse_args(argv)
    if args.cmd is None:
        args = build_parser().parse_args([default, *(argv or [])])
    try:
        args.fn(args)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"错误：{e}")
    return 0


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"共享前缀比例需要数字，收到 {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"共享前缀比例必须在 [0, 1) 之间，收到 {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch02_selector",
        description="技术选型决策树：先放得下，再跑得快，最后跑得省。",
    )
    p.add_argument("--params", type=number("参数量"), required=True, help="模型总参数量，如 70e9")
    p.add_argument("--active-params", type=number("激活参数量"), help="MoE 每个 token 激活的参数量")
    p.add_argument(
        "--weight-bits", type=int, choices=(4, 8, 16, 32), default=16, help="权重位宽（默认 16）"
    )
    p.add_argument(
        "--gpu", choices=sorted(GPUS), default="h100-sxm", help="GPU 型号预设（默认 h100-sxm）"
    )
    p.add_argument("--gpu-mem-gb", type=number("显存"), help="覆盖预设的单卡显存（GB）")
    p.add_argument("--mem-bw-gbps", type=number("带宽"), help="覆盖预设的单卡显存带宽（GB/s）")
    p.add_argument(
        "--num-gpus", type=number("GPU 数", integer=True), default=1, help="GPU 数（默认 1）"
    )
    p.add_argument(
        "--p99-tpot-ms",
        "--p99-latency-ms",
        dest="p99_tpot_ms",
        type=number("延迟目标"),
        help="每个输出 token 的 p99 延迟目标（毫秒）",
    )
    p.add_argument(
        "--p99-ttft-ms", type=number("首 token 目标"), help="首 token 的 p99 延迟目标（毫秒）"
    )
    p.add_argument(
        "--prompt-tokens",
        type=number("提示词长度", integer=True),
        default=1024,
        help="典型提示词长度（默认 1024）",
    )
    p.add_argument(
        "--concurrency",
        type=number("并发数", integer=True),
        default=1,
        help="同时在途的请求数（默认 1）",
    )
    p.add_argument("--experts", type=number("专家数", integer=True), help="MoE 每层路由专家数 E")
    p.add_argument(
        "--experts-per-token",
        type=number("每 token 专家数", integer=True),
        help="每个 token 选的专家数 k",
    )
    p.add_argument(
        "--shared-prefix", type=share, default=0.0, help="请求间共享前缀占提示词的比例 [0, 1)"
    )
    return p


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    preset = GPUS[args.gpu]
    memory = args.gpu_mem_gb or preset.memory_gb
    bandwidth = args.mem_bw_gbps or preset.bandwidth_gbps
    overridden = (memory, bandwidth) != (preset.memory_gb, preset.bandwidth_gbps)
    gpu = dataclasses.replace(
        preset,
        name=f"{preset.name}（规格按参数覆盖）" if overridden else preset.name,
        memory_gb=memory,
        bandwidth_gbps=bandwidth,
    )
    return Scenario(
        params=args.params,
        gpu=gpu,
        num_gpus=args.num_gpus,
        weight_bits=args.weight_bits,
        active_params=args.active_params,
        p99_tpot_ms=args.p99_tpot_ms,
        p99_ttft_ms=args.p99_ttft_ms,
        prompt_tokens=args.prompt_tokens,
        concurrency=args.concurrency,
        shared_prefix=args.shared_prefix,
    )


def moe_lines(s: Scenario, experts: int, k: int) -> list[str]:
    """批量解码时 MoE 实际读取的专家比例，以及读完全部权重的时间（批量很大时的下限）。"""
    coverage = expert_coverage(k, experts, s.concurrency)
    full = decode_floor_ms(s.params, s.weight_bits, s.gpu.bandwidth_gbps, s.num_gpus)
    return [
        f"MoE 批量解码：{s.concurrency} 个 token 同批时约 {coverage:.0%} 的路由专家被读到"
        f"（k={k}、E={experts}、路由均匀）；全部权重读一遍需 {full:.1f} ms",
    ]


def report(s: Scenario, moe: tuple[int, int] | None = None) -> str:
    floor = decode_floor_ms(s.active, s.weight_bits, s.gpu.bandwidth_gbps, s.num_gpus)
    uncached = max(1, round(s.prompt_tokens * (1 - s.shared_prefix)))
    prefill = prefill_ms(s.active, uncached, s.gpu.bf16_tflops, s.num_gpus)
    kind = f"MoE，激活 {s.active / 1e9:g}B" if s.active_params else "稠密"
    lines = [
        f"模型：{s.params / 1e9:g}B 参数（{kind}），{s.weight_bits} bit 权重 "
        f"{weight_gb(s.params, s.weight_bits):.1f} GB",
        f"硬件：{s.num_gpus} × {s.gpu.name}，{s.gpu.memory_gb:g} GB、"
        f"{s.gpu.bandwidth_gbps:g} GB/s；"
        f"可用显存 {s.usable_gb:.1f} GB（按 {s.usable_fraction:.0%} 计）",
        f"解码下限：{floor:.1f} ms/token（每步读一遍激活权重）",
        f"预填充估算：{prefill:.0f} ms（{uncached} 个未命中缓存的 token，BF16 峰值算力的 50%）",
    ]
    if moe:
        lines += moe_lines(s, *moe)
    lines.append("")
    advice = recommend(s)
    if not advice:
        lines.append("没有硬约束被触发：先用 vLLM/SGLang 默认配置上线，再按第 9 章监控调优。")
    for i, a in enumerate(advice, 1):
        lines.append(f"{i}. [{a.level}] {a.technique} → 见 {a.section_title}")
        lines.append(f"   {a.reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    moe = None
    if (args.experts is None) != (args.experts_per_token is None):
        parser.error("--experts 与 --experts-per-token 需要同时给出")
    if args.experts is not None:
        if args.active_params is None:
            parser.error("--experts 只对 MoE 模型有意义，请同时给出 --active-params")
        if args.experts_per_token > args.experts:
            parser.error("--experts-per-token 不能大于 --experts")
        moe = (args.experts, args.experts_per_token)
    try:
        scenario = scenario_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    print(report(scenario, moe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
