"""``python -m ch05_kv_cache``：朴素生成 vs KV Cache、KV 大小计算、分页浪费、前缀缓存、Agent 循环。

不带子命令时运行 ``bench``：同一提示下两种生成的 token 是否相同、各自耗时与 FLOPs。
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from ch02_selector.cli import number, run_subcommand
from ch03_gpu.vram import DTYPE_BYTES
from tinyllm.hf import load_model

from . import kv_size, workloads
from .naive import count_flops, generate_cached, generate_recompute, generation_flops, step_times


def cmd_bench(args) -> None:
    model = load_model(args.model)
    prompt = [model.config.bos_token_id] + list(args.prompt.encode())
    limit = model.config.max_position_embeddings
    if len(prompt) + args.max_new_tokens > limit:
        sys.exit(
            f"错误：提示 {len(prompt)} + 生成 {args.max_new_tokens} 超过模型上限 {limit} 个 token"
        )
    print(f"提示 {len(prompt)} token，贪心生成 {args.max_new_tokens} 个 token")
    results = {}
    for name, fn, cached in (
        ("朴素重算", generate_recompute, False),
        ("KV Cache", generate_cached, True),
    ):
        t0 = time.perf_counter()
        tokens = fn(model, prompt, args.max_new_tokens)
        seconds = time.perf_counter() - t0
        measured = count_flops(lambda: fn(model, prompt, args.max_new_tokens))  # noqa: B023
        formula = generation_flops(model.config, len(prompt), args.max_new_tokens, cached)
        results[name] = tokens
        print(
            f"  {name:<8} {seconds:6.2f} s  {args.max_new_tokens / seconds:7.1f} token/s  "
            f"FLOPs 实数 {measured / 1e9:7.2f} G（公式 {formula / 1e9:7.2f} G）"
        )
    same = results["朴素重算"] == results["KV Cache"]
    print(f"两种方法生成的 token {'完全相同' if same else '不同！'}")


def cmd_steps(args) -> None:
    model = load_model(args.model)
    lengths = args.lengths
    if max(lengths) > model.config.max_position_embeddings:
        sys.exit(f"错误：长度不能超过 {model.config.max_position_embeddings}")
    rows = step_times(model, lengths, args.repeats)
    print(f"{'上下文':>6} {'朴素一步 ms':>11} {'缓存一步 ms':>11} {'倍数':>6}")
    for n, naive, cached in rows:
        print(f"{n:>6} {naive * 1e3:>11.2f} {cached * 1e3:>11.2f} {naive / cached:>6.1f}")
    if args.plot:
        from .plot import plot_step_times

        title = f"tinyllm on CPU ({torch.get_num_threads()} threads), PyTorch {torch.__version__}"
        print(f"图已写入 {plot_step_times(rows, title, args.plot)}")


def cmd_size(args) -> None:
    layouts = kv_size.load_layouts()
    keys = args.models or list(layouts)
    unknown = [k for k in keys if k not in layouts]
    if unknown:
        sys.exit(f"错误：未知模型 {', '.join(unknown)}；可选 {', '.join(layouts)}")
    print(
        f"| 模型 | 结构 | 每 token（{args.dtype}） | {args.tokens:,} token | 占同规模 MHA 的比例 |"
    )
    print("|---|---|--:|--:|--:|")
    for row in kv_size.table(keys, args.tokens, args.dtype):
        print("| " + " | ".join(row) + " |")


def cmd_paged(args) -> None:
    reqs = workloads.mixed_requests(args.requests, args.seed)  # 工作负载固定，只换预留策略
    used, rows = workloads.waste_table(
        reqs, args.max_model_len, args.max_tokens, args.block_size, args.budget
    )
    names = {
        "max_model_len": f"连续，按 max_model_len={args.max_model_len} 预留",
        "max_tokens": f"连续，按 prompt + max_tokens={args.max_tokens} 预留",
        "paged": f"分页，block_size={args.block_size}",
    }
    print(f"{args.requests} 个请求（种子 {args.seed}），实际 KV 共 {used:,} token")
    print(f"| 策略 | 预留 token | 有效利用率 | {args.budget:,} token 的预算能同时放下 |")
    print("|---|--:|--:|--:|")
    for strategy, reserved, util, fit in rows:
        print(f"| {names[strategy]} | {reserved:,} | {util:.1%} | {fit} 个请求 |")


def cmd_prefix(args) -> None:
    model = load_model(args.model)
    if args.system + args.user > model.config.max_position_embeddings:
        sys.exit(f"错误：--system + --user 不能超过 {model.config.max_position_embeddings}")
    prompts = workloads.shared_prefix_prompts(
        args.system, args.user, args.requests, model.config.bos_token_id
    )
    best = {}
    for caching in (False, True):
        runs = [
            workloads.prefill_all(model, prompts, args.block_size, caching)
            for _ in range(args.repeats)
        ]
        best[caching] = min(runs, key=lambda r: sum(s for _, s, _ in r[1:]))
    off, on = best[False], best[True]
    same = [t for _, _, t in off] == [t for _, _, t in on]
    warm_off, warm_on = sum(s for _, s, _ in off[1:]), sum(s for _, s, _ in on[1:])
    print(
        f"{args.requests} 个请求：系统提示 P={args.system}、"
        f"用户输入 U={args.user} token，block_size={args.block_size}"
    )
    print(
        f"  prefill 的 token 数：不开缓存 {sum(n for n, _, _ in off):,}，"
        f"开缓存 {sum(n for n, _, _ in on):,}"
    )
    print(f"  第 2 个请求起每个要算：不开 {off[1][0]} 个，开 {on[1][0]} 个")
    print(
        f"  第 2 个请求起 prefill 总耗时：不开 {warm_off * 1e3:.1f} ms，开 {warm_on * 1e3:.1f} ms"
    )
    print(
        f"  实测加速 {warm_off / warm_on:.1f}×，估算 1 + P/U = {1 + args.system / args.user:.1f}×"
    )
    print(f"  两种方式预测的下一个 token {'完全相同' if same else '不同！'}")


def cmd_agent(args) -> None:
    print(f"Agent 循环 {args.turns} 轮，block_size={args.block_size}")
    print("| 做法 | 各轮提示合计 | 开缓存后要 prefill | 命中率 |")
    print("|---|--:|--:|--:|")
    for strategy in ("append", "modify", "shuffle_tools"):
        rows = workloads.agent_prefill_tokens(
            workloads.agent_transcript(args.turns, strategy), args.block_size
        )
        total, computed = sum(n for n, _ in rows), sum(c for _, c in rows)
        print(f"| {strategy} | {total:,} | {computed:,} | {1 - computed / total:.1%} |")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch05_kv_cache", description=__doc__.splitlines()[0].replace("``", "")
    )
    sub = p.add_subparsers(dest="cmd")
    model_help = "换成别的 HF 格式模型目录（默认用随书的 tinyllm）"

    b = sub.add_parser("bench", help="朴素重算 vs KV Cache：token 是否相同、耗时、FLOPs")
    b.add_argument("--prompt", default="KV Cache 的作用是", help="提示文字")
    b.add_argument(
        "--max-new-tokens",
        type=number("--max-new-tokens", integer=True),
        default=64,
        help="贪心生成多少个 token",
    )
    b.add_argument("--model", help=model_help)
    b.set_defaults(fn=cmd_bench)

    s = sub.add_parser("steps", help="每生成一个 token 的耗时随上下文长度的变化")
    s.add_argument(
        "--lengths",
        type=number("--lengths", integer=True),
        nargs="+",
        default=[32, 64, 128, 256, 384, 512],
        help="要测的上下文长度（token）",
    )
    s.add_argument(
        "--repeats", type=number("--repeats", integer=True), default=5, help="每个长度测几次取最快"
    )
    s.add_argument("--plot", type=Path, help="把结果画成 SVG 写到这个路径")
    s.add_argument("--model", help=model_help)
    s.set_defaults(fn=cmd_steps)

    z = sub.add_parser("size", help="真实模型每个 token 的 KV Cache 大小（MHA/MQA/GQA/MLA）")
    z.add_argument(
        "models", nargs="*", help=f"模型（默认全部）：{', '.join(kv_size.load_layouts())}"
    )
    z.add_argument(
        "--tokens",
        type=number("--tokens", integer=True),
        default=32768,
        help="同时算这么多 token 的总量",
    )
    z.add_argument(
        "--dtype", choices=[d for d in DTYPE_BYTES if d != "int4"], default="bf16", help="KV 的精度"
    )
    z.set_defaults(fn=cmd_size)

    g = sub.add_parser("paged", help="长短混杂的请求：连续预留 vs 分页的显存利用率")
    g.add_argument(
        "--requests",
        type=number("--requests", integer=True),
        default=200,
        help="工作负载里的请求数",
    )
    g.add_argument("--seed", type=int, default=0, help="生成工作负载的随机种子")
    g.add_argument(
        "--max-model-len",
        type=number("--max-model-len", integer=True),
        default=2048,
        help="按模型最大长度预留时，每个请求留多少 token",
    )
    g.add_argument(
        "--max-tokens",
        type=number("--max-tokens", integer=True),
        default=512,
        help="按 prompt + max_tokens 预留时的 max_tokens",
    )
    g.add_argument(
        "--block-size",
        type=number("--block-size", integer=True),
        default=16,
        help="分页的块大小（token）",
    )
    g.add_argument(
        "--budget", type=number("--budget", integer=True), default=65536, help="KV 预算（token 数）"
    )
    g.set_defaults(fn=cmd_paged)

    x = sub.add_parser("prefix", help="共享系统提示：前缀缓存省下的 prefill 与实测加速")
    x.add_argument(
        "--system", type=number("--system", integer=True), default=384, help="系统提示 token 数 P"
    )
    x.add_argument(
        "--user", type=number("--user", integer=True), default=32, help="用户输入 token 数 U"
    )
    x.add_argument(
        "--requests",
        type=number("--requests", integer=True),
        default=9,
        help="请求数（第 1 个冷启动）",
    )
    x.add_argument(
        "--block-size",
        type=number("--block-size", integer=True),
        default=16,
        help="块大小（token）",
    )
    x.add_argument(
        "--repeats", type=number("--repeats", integer=True), default=3, help="重复几遍取最快"
    )
    x.add_argument("--model", help=model_help)
    x.set_defaults(fn=cmd_prefix)

    a = sub.add_parser("agent", help="Agent 循环：追加 vs 原地修改 vs 工具乱序的缓存命中")
    a.add_argument(
        "--turns", type=number("--turns", integer=True), default=20, help="Agent 循环的轮数"
    )
    a.add_argument(
        "--block-size",
        type=number("--block-size", integer=True),
        default=16,
        help="块大小（token）",
    )
    a.set_defaults(fn=cmd_agent)
    return p


def main(argv: list[str] | None = None) -> int:
    torch.manual_seed(0)
    return run_subcommand(build_parser, "bench", argv)
