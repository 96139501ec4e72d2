"""``python -m ch06_scheduling``：静态 vs 连续批处理、调度策略、拼接批次、PD 分离、vLLM 调度参数。

不带子命令时运行 ``compare``：同一条泊松轨迹，在本书模型上实跑静态批处理与连续批处理。
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path

import torch
import yaml
from ch02_selector.cli import number, run_subcommand

from .engine import RunResult, Worker, run, summarize
from .executor import ModelExecutor
from .scheduler import POLICIES, Scheduler, SchedulerConfig, StaticScheduler
from .trace import TraceRequest, load_trace, poisson_trace, save_trace


@cache
def load_model(path: str | None):
    from tinyllm.hf import load_model as load

    return load(path)  # 三种批处理方式共用同一个模型，只加载一次


def get_trace(args, **defaults) -> list[TraceRequest]:
    if getattr(args, "trace", None):
        return load_trace(args.trace)
    return poisson_trace(args.requests, args.rate, args.seed, **defaults)


def run_tiny(trace, config: SchedulerConfig, static: bool, model_path: str | None) -> RunResult:
    """在本书模型上实跑（墙钟计时）。"""
    model = load_model(model_path)
    limit = model.config.max_position_embeddings
    too_long = [r.req_id for r in trace if len(r.prompt) + r.max_tokens > limit]
    if too_long:
        sys.exit(f"错误：请求 {too_long[:5]} 的提示 + max_tokens 超过模型上限 {limit}")
    sched = (StaticScheduler if static else Scheduler)(config)
    return run(trace, [Worker("cpu", sched, ModelExecutor(model, sched))])


def print_table(rows: dict[str, dict]) -> None:
    print(
        "| 方式 | TTFT p50 | TTFT p90 |"
        " TPOT p50 | 排队均值 | 吞吐 token/s | 步数 | padding | 抢占 |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, s in rows.items():
        print(
            f"| {name} | {s['ttft_p50'] * 1e3:.0f} ms | {s['ttft_p90'] * 1e3:.0f} ms | "
            f"{s['tpot_p50'] * 1e3:.1f} ms | "
            f"{s['queue_mean'] * 1e3:.0f} ms | {s['throughput']:.0f} | "
            f"{s['steps']} | {s['padded_tokens']} | {s['preemptions']} |"
        )


def sched_config(args, **override) -> SchedulerConfig:
    fields = dict(
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        num_blocks=args.num_blocks,
        block_size=args.block_size,
    )
    return SchedulerConfig(**{**fields, **override})


def cmd_compare(args) -> None:
    trace = get_trace(args, prompt_range=(16, 320), output_range=(8, 128))
    longest = max(
        len(r.prompt) for r in trace
    )  # 不分块时预算至少要放下最长的提示（vLLM 也这样调整）
    unchunked = sched_config(
        args,
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(args.max_num_batched_tokens, longest),
    )
    results = {
        "静态批处理": run_tiny(trace, sched_config(args), True, args.model),
        "连续批处理": run_tiny(trace, unchunked, False, args.model),
        "连续批处理 + 分块 prefill": run_tiny(trace, sched_config(args), False, args.model),
    }
    print(
        f"{len(trace)} 个请求，到达率 {args.rate}/s，"
        f"种子 {args.seed}；本机 CPU {torch.get_num_threads()} 线程实测"
    )
    print_table({k: summarize(r) for k, r in results.items()})
    outputs = [
        [s.output for s in sorted(r.seqs, key=lambda s: s.req.req_id)] for r in results.values()
    ]
    print(
        f"三种方式生成的 token {'完全相同' if all(o == outputs[0] for o in outputs) else '不同！'}"
    )
    if args.plot:
        from .plot import plot_timelines

        runs = {
            "static batching": results["静态批处理"].steps,
            "continuous batching": results["连续批处理 + 分块 prefill"].steps,
        }
        print(f"时间线已写入 {plot_timelines(runs, len(trace), args.plot)}")


def cmd_policies(args) -> None:
    from .pd import Deployment, make_worker

    trace = get_trace(
        args, prompt_range=(256, 4096), output_range=(32, 512), vocab=1000, priorities=2
    )
    rows, per_class = {}, {}
    for policy in POLICIES:
        w = make_worker(Deployment(max_num_seqs=args.max_num_seqs), "gpu0", "both")
        w.scheduler.config = SchedulerConfig(**{**w.scheduler.config.__dict__, "policy": policy})
        result = run(trace, [w])
        rows[policy] = summarize(result)
        per_class[policy] = [
            sum(s.first_token - s.req.arrival for s in result.seqs if s.req.priority == p)
            / max(1, sum(s.req.priority == p for s in result.seqs))
            for p in (0, 1)
        ]
    print(
        f"{len(trace)} 个请求，到达率 {args.rate}/s；"
        "建模：Llama-3-8B / H100 SXM，Roofline 计时（见第 3 章）"
    )
    print_table(rows)
    for policy, (hi, lo) in per_class.items():
        print(
            f"  {policy:<8} 平均 TTFT：priority=0 "
            f"的请求 {hi * 1e3:.0f} ms，priority=1 的请求 {lo * 1e3:.0f} ms"
        )


def cmd_pd(args) -> None:
    from .pd import Deployment, colocated, disaggregated

    d = Deployment(link_gbps=args.link_gbps)
    rows = []
    print(
        f"建模：{d.model} / {d.gpu}，2 张卡；"
        f"KV 链路 {d.link_gbps} GB/s；每个到达率 {args.requests} 个请求"
    )
    print("| 到达率 | 部署 | TTFT p50 | TTFT p90 | TPOT p50 | TPOT p90 | 吞吐 token/s |")
    print("|--:|---|--:|--:|--:|--:|--:|")
    for rate in args.rates:
        trace = poisson_trace(args.requests, rate, args.seed, (1024, 8192), (64, 512), vocab=1000)
        pair = [summarize(colocated(trace, d, 2)), summarize(disaggregated(trace, d, 1, 1))]
        for name, s in zip(("混合 2×", "PD 1P+1D"), pair, strict=True):
            print(
                f"| {rate:g}/s | {name} | {s['ttft_p50'] * 1e3:.0f} "
                f"ms | {s['ttft_p90'] * 1e3:.0f} ms | "
                f"{s['tpot_p50'] * 1e3:.1f} ms |"
                f" {s['tpot_p90'] * 1e3:.1f} ms | {s['throughput']:.0f} |"
            )
        rows.append((rate, *pair))
    if args.plot:
        from .plot import plot_pd

        title = f"Modelled: Llama-3-8B on H100 SXM, KV link {d.link_gbps:g} GB/s, seed {args.seed}"
        print(f"图已写入 {plot_pd(rows, title, args.plot)}")


def cmd_ragged(args) -> None:
    from ch05_kv_cache.naive import forward_full

    from .ragged import (
        block_diagonal_causal_mask,
        mixed_step_padding,
        padding_tokens,
        ragged_forward,
    )

    model = load_model(args.model)
    prompts = [[model.config.bos_token_id] + list(p.encode()) for p in args.prompts]
    mask = block_diagonal_causal_mask([len(p) for p in prompts])
    if len(mask) <= 12:
        print("块对角因果掩码（■ 可见）：")
        for row in mask:
            print("  " + " ".join("■" if v else "·" for v in row))
    alone = [forward_full(model, p) for p in prompts]
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(ragged_forward(model, prompts), alone, strict=True)
    )
    print(f"拼接一次前向 vs 各自单独前向：logits 最大差 {diff:.2e}")
    lengths = [len(p) for p in prompts]
    print(f"静态批处理补齐到 {max(lengths)}：padding {padding_tokens(lengths)} 个，拼接批次 0 个")
    print(
        "B=8 的批里 7 个请求在 decode、新来 1 个 100 token 的提示："
        f"补齐要 {mixed_step_padding(8, 100)} 个 padding"
    )


def cmd_knobs(_args) -> None:
    data = yaml.safe_load((Path(__file__).parent / "data" / "vllm_knobs.yml").read_text("utf-8"))
    print(
        f"vLLM {data['version']} 的调度参数（对照源码 "
        "vllm/config/scheduler.py 与 vllm/engine/arg_utils.py）"
    )
    for k in data["knobs"]:
        print(f"  {k['flag']}\n      默认：{k['default']}\n      作用：{k['meaning']}")


def cmd_trace(args) -> None:
    trace = poisson_trace(
        args.requests, args.rate, args.seed, (16, 320), (8, 128)
    )  # 与 compare 相同
    save_trace(trace, args.out)
    print(f"{len(trace)} 个请求写入 {args.out}（最后一个在 {trace[-1].arrival:.2f} s 到达）")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch06_scheduling", description=__doc__.splitlines()[0]
    )
    sub = p.add_subparsers(dest="cmd")

    def trace_args(sp, requests: int, rate: float) -> None:
        sp.add_argument(
            "--requests", type=number("--requests", integer=True), default=requests, help="请求数"
        )
        sp.add_argument(
            "--rate", type=number("--rate"), default=rate, help="平均每秒到达几个请求（泊松）"
        )
        sp.add_argument("--seed", type=int, default=0, help="轨迹的随机种子")

    c = sub.add_parser("compare", help="本书模型上实跑：静态批处理 vs 连续批处理（± 分块 prefill）")
    trace_args(c, 24, 40.0)
    c.add_argument("--trace", type=Path, help="回放一个 JSON 轨迹（由 trace 子命令生成）")
    c.add_argument(
        "--max-num-seqs",
        type=number("--max-num-seqs", integer=True),
        default=8,
        help="同时运行的请求数上限（静态批处理时即批大小）",
    )
    c.add_argument(
        "--max-num-batched-tokens",
        type=number("--max-num-batched-tokens", integer=True),
        default=256,
        help="每步最多处理的 token 数（分块 prefill 按它切）",
    )
    c.add_argument(
        "--num-blocks", type=number("--num-blocks", integer=True), default=256, help="KV 块池大小"
    )
    c.add_argument(
        "--block-size",
        type=number("--block-size", integer=True),
        default=16,
        help="块大小（token）",
    )
    c.add_argument("--plot", type=Path, help="把时间线画成 SVG")
    c.add_argument("--model", help="换成别的 HF 格式模型目录（默认用随书的 tinyllm）")
    c.set_defaults(fn=cmd_compare)

    s = sub.add_parser("policies", help="fcfs / priority / sjf 在同一轨迹上的对比（建模）")
    trace_args(s, 300, 10.0)
    s.add_argument(
        "--max-num-seqs",
        type=number("--max-num-seqs", integer=True),
        default=16,
        help="同时运行的请求数上限",
    )
    s.set_defaults(fn=cmd_policies)

    d = sub.add_parser("pd", help="PD 分离 vs 混合部署：TTFT/TPOT 随到达率的变化（建模）")
    d.add_argument(
        "--rates",
        type=number("--rates"),
        nargs="+",
        default=[4.0, 8.0, 12.0, 16.0],
        help="要比较的到达率（请求/秒）",
    )
    d.add_argument(
        "--requests",
        type=number("--requests", integer=True),
        default=300,
        help="每个到达率模拟多少个请求",
    )
    d.add_argument("--seed", type=int, default=0, help="轨迹的随机种子")
    d.add_argument("--link-gbps", type=number("--link-gbps"), default=50.0, help="KV 传输带宽 GB/s")
    d.add_argument("--plot", type=Path, help="画成 SVG")
    d.set_defaults(fn=cmd_pd)

    r = sub.add_parser("ragged", help="拼接批次与块对角掩码：与逐个前向的 logits 对比")
    r.add_argument("prompts", nargs="*", default=["KV", "调度", "batch"], help="几个提示")
    r.add_argument("--model", help="换成别的 HF 格式模型目录")
    r.set_defaults(fn=cmd_ragged)

    k = sub.add_parser("knobs", help="vLLM 0.33.0 调度参数一览（已对照源码）")
    k.set_defaults(fn=cmd_knobs)

    t = sub.add_parser("trace", help="生成可回放的请求轨迹 JSON")
    trace_args(t, 24, 40.0)
    t.add_argument("--out", type=Path, required=True, help="写到这个 JSON 文件")
    t.set_defaults(fn=cmd_trace)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(build_parser, "compare", argv)
