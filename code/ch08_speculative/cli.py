"""``python -m ch08_speculative``：投机采样演示、γ 与草稿的扫描、分布检验、训练 EAGLE 草稿头。

不带子命令时运行 ``demo``：本书模型当目标、随书的 2 层小模型当草稿，贪心生成并与逐 token 解码对比。
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from ch02_selector.cli import number, run_subcommand

from .lm import CachedLM
from .proposers import DraftModelProposer, JacobiProposer, NgramProposer
from .speculative import expected_tokens_per_step, speculative_generate

CHECKPOINTS = Path(__file__).with_name("checkpoints")
PROMPTS = ["KV Cache 的作用是", "推理成本下降的原因", "GPU 的显存带宽", "本书的小模型"]
PROPOSERS = ("draft", "draft-xs", "int4-self", "eagle", "ngram", "jacobi")
MODEL_HELP = "目标模型目录（默认用随书的小模型）"


def load(path: str | Path | None):
    from tinyllm.hf import load_model

    return load_model(path)


def make_proposer(name: str, target: CachedLM, args):
    """按名字造草稿来源；每次新建，缓存互不干扰。"""
    if name in ("draft", "draft-xs"):
        return DraftModelProposer(CachedLM(load(CHECKPOINTS / name), target.max_len))
    if name == "int4-self":  # 8.4.2：把目标模型自己量化成 INT4 当草稿（第 7 章的 QuantLinear）
        from ch07_quantization.qmodel import dequantized, quantize_model
        from ch07_quantization.quant import QuantSpec

        int4 = quantize_model(load(args.model), QuantSpec(4, True, "group", 32))
        return DraftModelProposer(CachedLM(dequantized(int4), target.max_len))
    if name == "eagle":
        from .eagle import EagleProposer, load_head

        return EagleProposer(load_head(target.model, args.eagle), target)
    if name == "ngram":
        return NgramProposer()
    return JacobiProposer()


def run_one(name: str, gamma: int, prompt: list[int], args) -> tuple[list[int], dict]:
    # 缓存只开到这次要用的长度：注意力对整段预分配的缓存做掩码，开大了每步都白算
    target = CachedLM(load(args.model), len(prompt) + args.max_new_tokens + gamma + 1)
    proposer = make_proposer(name, target, args)
    t0 = time.perf_counter()
    out, stats = speculative_generate(
        target, proposer, prompt, args.max_new_tokens, gamma, args.temperature, args.seed
    )
    wall = time.perf_counter() - t0
    draft_lm = getattr(proposer, "lm", proposer)  # 草稿模型的耗时记在它的 CachedLM 上
    return out, {
        "stats": stats,
        "wall": wall,
        "target_forwards": target.forwards,
        "target_seconds": target.seconds,
        "draft_forwards": draft_lm.forwards,
        "draft_seconds": getattr(draft_lm, "seconds", 0.0),
    }


def encode(text: str) -> list[int]:
    from tinyllm.tokenizer import ByteTokenizer

    return ByteTokenizer().encode(text)


def check_length(args, prompts: list[list[int]]) -> None:
    limit = 512 - max(args.gamma if isinstance(args.gamma, int) else max(args.gamma), 0) - 1
    longest = max(len(p) for p in prompts) + args.max_new_tokens
    if longest > limit:
        sys.exit(f"错误：提示 + 生成共 {longest} 个 token，加上草稿超过模型上限 512")


def check_sampling(args) -> None:
    if args.temperature < 0:
        raise ValueError("--temperature 不能为负")
    names = getattr(args, "proposers", None) or [getattr(args, "draft", "")]
    if args.temperature > 0 and "jacobi" in names:
        raise ValueError("Jacobi 解码只定义了贪心，temperature 必须为 0")


def cmd_demo(args) -> None:
    check_sampling(args)
    prompt = encode(args.prompt)
    check_length(args, [prompt])
    base, b = run_one("ngram", 0, prompt, args)  # γ = 0：同一条代码路径上的逐 token 解码
    out, r = run_one(args.draft, args.gamma, prompt, args)
    from tinyllm.tokenizer import ByteTokenizer

    text = ByteTokenizer().decode(out).rstrip("\ufffd")  # 截断在多字节汉字中间时去掉残字
    s = r["stats"]
    print(f"提示：{args.prompt}")
    print(f"续写：{text}")
    if args.temperature == 0:
        print(f"与逐 token 贪心解码{'完全相同' if out == base else '不同'}")
    else:
        print(
            "采样模式：随机数的用法与逐 token 解码不同，输出不逐字相同，但服从同一分布（见 check）"
        )
    print(
        f"草稿 {args.draft}，γ = {args.gamma}：{s.steps} 次目标前向产出 {s.generated} 个 token，"
        f"每次 {s.tokens_per_step:.2f} 个；α ≈ {s.alpha:.3f}，"
        f"公式预测每次 {expected_tokens_per_step(s.alpha, args.gamma):.2f} 个"
    )
    if not args.no_timing:
        print(
            f"墙钟：逐 token {b['wall']:.2f} s，投机采样 {r['wall']:.2f} s，"
            f"加速 {b['wall'] / r['wall']:.2f}×（本机 CPU，受负载影响）"
        )


def sweep_row(name: str, gamma: int, prompts: list[list[int]], args) -> dict:
    """一种草稿、一个 γ，跑完全部提示，汇总接受率、每次前向产出和耗时。"""
    tot = dict.fromkeys(("steps", "gen", "acc", "rej", "wall", "tf", "ts", "df", "ds"), 0.0)
    for p in prompts:
        _, r = run_one(name, gamma, p, args)
        s = r["stats"]
        for key, value in (
            ("steps", s.steps),
            ("gen", s.generated),
            ("acc", s.accepted),
            ("rej", s.rejections),
            ("wall", r["wall"]),
            ("tf", r["target_forwards"]),
            ("ts", r["target_seconds"]),
            ("df", r["draft_forwards"]),
            ("ds", r["draft_seconds"]),
        ):
            tot[key] += value
    return {
        "name": name,
        "gamma": gamma,
        "alpha": tot["acc"] / max(1, tot["acc"] + tot["rej"]),
        "tokens_per_step": tot["gen"] / tot["steps"],
        "draft_forward_s": tot["ds"] / tot["df"] if tot["df"] else 0.0,
        "wall": tot["wall"],
    }


def time_baseline(prompts: list[list[int]], args, repeats: int = 2) -> tuple[float, float]:
    """逐 token 解码（γ = 0）的总墙钟与目标单步前向的平均耗时；先空跑一次预热，再取最快的一遍。"""
    run_one("ngram", 0, prompts[0], args)  # 预热：第一次前向要分配内存、选内核
    best = None
    for _ in range(repeats):
        runs = [run_one("ngram", 0, p, args)[1] for p in prompts]
        wall = sum(r["wall"] for r in runs)
        step = sum(r["target_seconds"] for r in runs) / sum(r["target_forwards"] for r in runs)
        if best is None or wall < best[0]:
            best = (wall, step)
    return best


def cmd_sweep(args) -> None:
    check_sampling(args)
    prompts = [encode(p) for p in PROMPTS]
    check_length(args, prompts)
    print(
        f"{len(prompts)} 条提示 × {args.max_new_tokens} 个新 token，"
        f"temperature = {args.temperature}\n"
    )
    head = "| 草稿 | γ | α | 每次目标前向产出 | 公式 (1−α^(γ+1))/(1−α) |"
    if args.no_timing:
        print(head + "\n|---|--:|--:|--:|--:|")
    else:
        base_wall, target_step = time_baseline(prompts, args)
        print(head + " c | 预测加速比 | 实测加速比 |\n|---|--:|--:|--:|--:|--:|--:|--:|")
    rows = []
    for name in args.proposers:
        for gamma in args.gamma:
            r = sweep_row(name, gamma, prompts, args)
            line = (
                f"| {name} | {gamma} | {r['alpha']:.3f} | {r['tokens_per_step']:.2f} | "
                f"{expected_tokens_per_step(r['alpha'], gamma):.2f} |"
            )
            if not args.no_timing:
                r["speedup"] = base_wall / r["wall"]
                # c：草稿一次前向 / 目标逐 token 解码一步（Leviathan 定理 3.8 的定义）；
                # 预测加速比用实测的每次产出（n-gram 常常提不出草稿，不能套 α 的公式）
                c = r["draft_forward_s"] / target_step
                model = r["tokens_per_step"] / (gamma * c + 1)
                line += f" {c:.2f} | {model:.2f}× | {r['speedup']:.2f}× |"
            rows.append(r)
            print(line)
    if args.plot:
        if args.no_timing:
            sys.exit("错误：--plot 需要实测加速比，不能与 --no-timing 同用")
        from .plot import plot_sweep

        title = "tinyllm target, greedy, 2-core CPU (wall clock varies by run)"
        print(f"\n图已保存到 {plot_sweep(rows, title, args.plot)}")


def cmd_check(args) -> None:
    from .toy import MarkovLM, chi_square, exact_distribution, sample_continuations

    target, draft = MarkovLM.random(3, 1, floor=0.2), MarkovLM.random(3, 2, floor=0.2)
    exact = exact_distribution(target, [0], 3)
    print(
        "目标与草稿：词表 3 的两条不同马尔可夫链；续写 3 个 token（27 种结果），"
        f"N = {args.samples}\n"
    )
    print("| 做法 | 卡方统计量 | 自由度 | p 值 | 总变差距离 |\n|---|--:|--:|--:|--:|")
    for label, wrong in (("投机采样（拒绝采样）", False), ("错误示范：草稿一律接受", True)):
        counts = sample_continuations(target, draft, [0], 3, 2, args.samples, args.seed, wrong)
        stat, df, p = chi_square(counts, exact, args.samples)
        tv = 0.5 * sum(abs(counts.get(k, 0) / args.samples - v) for k, v in exact.items())
        print(f"| {label} | {stat:.1f} | {df} | {p:.3g} | {tv:.4f} |")


def cmd_train_eagle(args) -> None:
    from tinyllm.hf import DEFAULT_DIR
    from tinyllm.train import checkpoint_corpus

    from .eagle import EagleTrainConfig, save_head, train_eagle

    target = load(args.model)
    data = checkpoint_corpus(args.docs, Path(args.model) if args.model else DEFAULT_DIR)
    torch.set_num_threads(2)
    head, report = train_eagle(target, data, EagleTrainConfig(steps=args.steps))
    save_head(head, args.out, report)
    print(
        f"已保存到 {args.out}：reg={report['final_reg']}，cls={report['final_cls']}，"
        f"用时 {report['seconds']} s"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch08_speculative",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", metavar="子命令")

    def common(s, gamma_many: bool) -> None:
        s.add_argument(
            "--max-new-tokens",
            type=number("--max-new-tokens", integer=True, upper=400),
            default=128,
            help="每条提示生成的 token 数",
        )
        if gamma_many:
            s.add_argument(
                "--gamma",
                type=number("--gamma", integer=True, upper=16),
                nargs="+",
                default=[1, 2, 4, 6, 8],
                help="每轮草稿 token 数 γ（可给多个）",
            )
        else:
            s.add_argument(
                "--gamma",
                type=number("--gamma", integer=True, upper=16),
                default=4,
                help="每轮草稿 token 数 γ",
            )
        s.add_argument(
            "--temperature", type=float, default=0.0, help="0 为贪心；大于 0 时走拒绝采样"
        )
        s.add_argument("--seed", type=int, default=0, help="采样的随机种子")
        s.add_argument(
            "--eagle",
            type=Path,
            default=CHECKPOINTS / "eagle",
            help="EAGLE 草稿头目录（默认随书训练好的）",
        )
        s.add_argument("--model", help=MODEL_HELP)

    s = sub.add_parser("demo", help="一条提示：投机采样与逐 token 解码的结果和耗时")
    s.add_argument("--prompt", default=PROMPTS[0], help="提示词")
    s.add_argument("--draft", choices=PROPOSERS, default="draft", help="草稿来源")
    s.add_argument("--no-timing", action="store_true", help="不打印墙钟时间（输出可逐字复现）")
    common(s, gamma_many=False)
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("sweep", help="各草稿 × 各 γ：接受率、每次前向产出、加速比")
    s.add_argument(
        "--proposers",
        nargs="+",
        choices=PROPOSERS,
        default=list(PROPOSERS),
        help="参与比较的草稿来源",
    )
    s.add_argument("--plot", type=Path, help="把结果画成 SVG")
    s.add_argument(
        "--no-timing",
        action="store_true",
        help="只打印与机器无关的列（接受率、每次前向产出），不计时",
    )
    common(s, gamma_many=True)
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("check", help="拒绝采样保持目标分布：马尔可夫链上的卡方检验")
    s.add_argument(
        "--samples",
        type=number("--samples", integer=True, upper=1_000_000),
        default=6000,
        help="抽样次数",
    )
    s.add_argument("--seed", type=int, default=0, help="随机种子")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser(
        "train-eagle", help="在目标模型特征上训练 EAGLE 式草稿头（2 核 CPU 约 10 分钟）"
    )
    s.add_argument("--out", type=Path, required=True, help="输出目录")
    s.add_argument(
        "--steps", type=number("--steps", integer=True, upper=100_000), default=500, help="训练步数"
    )
    s.add_argument("--docs", type=Path, default=Path("docs"), help="本书 docs/ 目录（训练语料）")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_train_eagle)
    return p


def main(argv: list[str] | None = None) -> int:
    torch.manual_seed(0)
    return run_subcommand(build_parser, "demo", argv)
