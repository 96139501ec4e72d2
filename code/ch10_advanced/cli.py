"""``python -m ch10_advanced``：第 10 章各节的演示。

不带子命令时运行 ``flash``。``compile`` 与 ``bench-fused`` 打印本机测得的时间，其余子命令的输出
只含与机器无关的数字（状态、误差、字节数、运算次数、token 数、模型估算）。
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import torch
from ch01_economics.cli import count, positive
from ch02_selector.cli import run_subcommand
from ch03_gpu.cli import price
from ch03_gpu.specs import load_gpus
from ch03_gpu.vram import load_models

from .flash import Traffic, flash_attention, flash_traffic, naive_attention, naive_traffic
from .lut import matmul_dequant, matmul_lut, op_counts, quantize


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    raise AssertionError  # pragma: no cover


def cmd_flash(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 256, args.head_dim, dtype=torch.float64) for _ in range(3))
    for causal in (False, True):
        t = Traffic()
        out = flash_attention(q, k, v, causal, args.block, args.block, t)
        err = (out - naive_attention(q, k, v, causal)).abs().max().item()
        name = "因果" if causal else "非因果"
        print(f"{name}：N = 256，分块 {args.block} 与朴素实现的最大差 {err:.1e}（float64）")
    print(f"\n每个头的显存读写与分数矩阵的大小，D = {args.head_dim}、FP16、分块 {args.block}：")
    print("| N | 朴素读写 | 分块读写 | 比值 | 朴素的 S（N×N） | 分块的 S 块 |")
    print("| --: | --: | --: | --: | --: | --: |")
    for n in args.seq_lens:
        a, b = (
            naive_traffic(n, args.head_dim),
            flash_traffic(n, args.head_dim, args.block, args.block),
        )
        na, nb = 2 * (a.reads + a.writes), 2 * (b.reads + b.writes)
        print(
            f"| {n} | {fmt_bytes(na)} | {fmt_bytes(nb)} | {na / nb:.1f}× | "
            f"{fmt_bytes(2 * n * n)} | {fmt_bytes(2 * args.block * args.block)} |"
        )


def cmd_lut(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    w = torch.randn(args.out_features, args.in_features, dtype=torch.float64)
    x = torch.randn(4, args.in_features, dtype=torch.float64)
    print(
        f"权重 {args.out_features}×{args.in_features}，每组 {args.group} 个一套 scale/zero，"
        f"查表分组 g = 4："
    )
    print(
        "| 比特 | 查表与反量化的最大差 | 量化误差（相对） "
        "| 乘加（反量化，每行激活） | 查表次数（每行） | 建表加法（每行） |"
    )
    print("| --: | --: | --: | --: | --: | --: |")
    for bits in args.bits:
        qw = quantize(w, bits, args.group)
        ref = matmul_dequant(x, qw)
        err = (matmul_lut(x, qw) - ref).abs().max().item()
        rel = ((ref - x @ w.T).norm() / (x @ w.T).norm()).item()
        ops = op_counts(1, args.in_features, args.out_features, bits)
        print(
            f"| {bits} | {err:.1e} | {rel:.3f} | {ops['dequant_macs']:,} | "
            f"{ops['lut_lookups']:,} | {ops['lut_table_adds']:,} |"
        )


SANDBOX_CASES = {
    "正常输出": "print(sum(range(10)))",
    "死循环": "while True:\n    pass",
    "睡过墙钟": "import time\ntime.sleep(60)",
    "fork 炸弹": "import os\nwhile True:\n    os.fork()",
    "内存炸弹": "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))",
    "刷屏输出": "while True:\n    print('x' * 1000)",
    "写大文件": "open('big', 'wb').write(b'x' * 8 * 2**20)",
    "写工作目录外": "open('../../../../../../escape.txt', 'w').write('x')",
    "读 /etc/passwd": "print(open('/etc/passwd').read())",
    "联网": "import socket\nsocket.create_connection(('127.0.0.1', 80))",
}


def cmd_sandbox(args: argparse.Namespace) -> None:
    from .sandbox import Limits, run_code

    limits = Limits(cpu_seconds=1, wall_seconds=5.0, memory_mb=256)
    print(
        f"限制：CPU {limits.cpu_seconds} s、墙钟 {limits.wall_seconds} s、"
        f"内存 {limits.memory_mb} MiB、"
        f"输出 {limits.output_bytes // 1024} KiB、单文件 {limits.file_bytes // 2**20} MiB"
    )
    print("| 代码 | 状态 | 标准错误的最后一行 |")
    print("| --- | --- | --- |")
    for name, code in SANDBOX_CASES.items():
        r = run_code(code, limits)
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        print(f"| {name} | {r.status} | {last.replace('|', '/')[:80]} |")


def cmd_serve_sandbox(args: argparse.Namespace) -> None:
    import uvicorn

    from .agent_server import create_app

    uvicorn.run(create_app(args.max_concurrent), host=args.host, port=args.port, log_level="info")


def cmd_hetero(args: argparse.Namespace) -> None:
    from ch03_gpu.roofline import decode

    from .hetero import place, rl_iteration_cost, rollout_fits, train_microbatch

    name, cfg, _ = load_models()[args.model]
    prices = dict(args.price)
    gpus = [load_gpus()[k] for k in prices]
    train = train_microbatch(cfg, args.microbatch)
    roll = decode(cfg, args.batch, args.context)
    print(
        f"{name}：训练微批 {args.microbatch} token 的算术强度 {train.intensity:,.0f} FLOP/B；"
        f"解码 batch {args.batch}、上下文 {args.context} 的算术强度 {roll.intensity:,.0f} FLOP/B"
    )
    print(
        "单价是本命令的输入（示例假设，不是报价）："
        + "，".join(f"{k} ${v}/h" for k, v in prices.items())
    )
    fit = [g for g in gpus if rollout_fits(cfg, g, args.batch, args.context)]
    if len(fit) < len(gpus):
        print("单卡放不下 rollout 的权重加 KV、不参与 rollout："
              + "，".join(g.key for g in gpus if g not in fit))  # fmt: skip
    for title, w, tokens, cands in (
        ("训练", train, args.microbatch, gpus),
        ("rollout 解码", roll, args.batch, fit),
    ):
        print(f"\n{title}：每百万 token 的成本（屋脊线模型，不含效率折扣）")
        print("| GPU | 受限于 | 每 token 时间 | $/百万 token |")
        print("| --- | --- | --: | --: |")
        for r in place(w, tokens, cands, prices):
            print(
                f"| {r.gpu} | {r.bound} | {r.seconds_per_token * 1e6:.2f} µs "
                f"| {r.usd_per_million:.3f} |"
            )
    plans = rl_iteration_cost(
        cfg,
        args.train_tokens,
        args.rollout_tokens,
        gpus,
        prices,
        args.microbatch,
        args.batch,
        args.context,
    )
    print(
        f"\n一轮 RL 迭代（训练 {args.train_tokens:,} token、"
        f"rollout 生成 {args.rollout_tokens:,} token）："
    )
    print("| 训练卡 | rollout 卡 | 成本 $ | 相对最省 |")
    print("| --- | --- | --: | --: |")
    for plan in plans:
        kind = "（同构）" if plan.train_gpu == plan.rollout_gpu else ""
        print(
            f"| {plan.train_gpu} | {plan.rollout_gpu}{kind} | {plan.usd:.2f} | "
            f"{plan.usd / plans[0].usd:.2f}× |"
        )


def cmd_moe(args: argparse.Namespace) -> None:
    from .moe import MoEConfig, ToyMoE, moe_grouped, moe_naive, routing_stats, train_router

    torch.manual_seed(0)
    cfg = MoEConfig(num_experts=args.experts, top_k=args.top_k)
    layer = ToyMoE(cfg).double()
    x = torch.randn(args.tokens, cfg.hidden, dtype=torch.float64)
    with torch.no_grad():
        head = x[:128]  # 逐 token 的参考实现慢，只在前 128 个 token 上比
        err = (moe_grouped(layer, head, 1.0) - moe_naive(layer, head, 1.0)).abs().max().item()
        skewed = ToyMoE(cfg).double()
        skewed.load_state_dict(layer.state_dict())
        skewed.router.weight[0] += 0.6  # 让路由偏向 0 号专家
        skewed.router.weight[1] += 0.3
    print(
        f"{cfg.num_experts} 个专家、top-{cfg.top_k}、{args.tokens} 个 token；"
        f"按专家分组与逐 token 计算的最大差 {err:.1e}（前 128 个 token，容量因子 1.0，float64）"
    )
    print("\n| 路由 | 容量因子 | 每专家容量 | 丢弃的分配 | 最忙专家/平均 | 均衡损失 |")
    print("| --- | --: | --: | --: | --: | --: |")
    for label, model in (("随机初始化", layer), ("偏斜", skewed)):
        for cf in args.capacity_factors:
            st = routing_stats(model, x, cf)
            print(
                f"| {label} | {cf} | {st['capacity']} | {st['dropped']:.1%} | "
                f"{st['max_over_mean']:.2f} | {st['balance_loss']:.3f} |"
            )
    print(f"\n只用均衡损失训练偏斜路由器 {args.steps} 步（SGD）：\n")
    print("| 步数 | 丢弃（容量因子 1.25） | 最忙专家/平均 | 均衡损失 |")
    print("| --: | --: | --: | --: |")
    done = 0
    for target in (0, args.steps // 4, args.steps):
        train_router(skewed, x, target - done, aux_weight=1.0, lr=args.lr)
        done = target
        with torch.no_grad():
            st = routing_stats(skewed, x, 1.25)
        print(
            f"| {done} | {st['dropped']:.1%} | {st['max_over_mean']:.2f} "
            f"| {st['balance_loss']:.3f} |"
        )


def cmd_vision(args: argparse.Namespace) -> None:
    from .vision import CLIP_L14_336, QWEN2VL_VIT, fixed_tokens, image_cost, qwen2vl_tokens

    name, cfg, _ = load_models()[args.model]
    print(f"语言模型 {name}，提示里另有 {args.text_tokens} 个文本 token；FLOPs 为一次前向：")
    print(
        "| 方案 | 图像（宽×高） | 视觉 patch | LLM token | 视觉编码 GFLOPs "
        "| LLM 预填充增量 GFLOPs | KV 增量 |"
    )
    print("| --- | --- | --: | --: | --: | --: | --: |")
    n = fixed_tokens()
    rows = [("LLaVA-1.5（缩放到 336×336）", "任意", CLIP_L14_336, n, n)]
    for h, w in args.sizes:
        rows.append(("Qwen2-VL（动态分辨率）", f"{w}×{h}", QWEN2VL_VIT, *qwen2vl_tokens(h, w)))
    for label, size, tower, patches, tokens in rows:
        c = image_cost(cfg, tower, patches, tokens, args.text_tokens)
        print(
            f"| {label} | {size} | {patches:,} | {tokens:,} | {c.vision_flops / 1e9:,.0f} | "
            f"{c.llm_prefill_flops / 1e9:,.0f} | {fmt_bytes(c.kv_bytes)} |"
        )


def cmd_compile(args: argparse.Namespace) -> None:
    from tinyllm.hf import load_model

    from .compiled import compiler_available, measure

    if missing := compiler_available():
        raise OSError(missing)
    torch.set_num_threads(args.threads)  # 批大小 1 的小模型：多线程只添同步开销和噪声
    model = load_model(args.model).eval()
    prompt = [model.config.bos_token_id, *args.prompt.encode("utf-8")]
    print(
        f"解码 {args.new_tokens} 步，eager 与 torch.compile（mode={args.mode}）"
        f"各跑 {args.repeats} 轮……",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # 空缓存：第一轮量到的是真正的冷编译
        reports = []
        for i in range(args.repeats):
            reports.append(measure(model, prompt, args.new_tokens, args.mode))
            print(f"  第 {i + 1} 轮完成", file=sys.stderr)
    eager = statistics.median(r.eager_ms for r in reports)
    compiled = statistics.median(r.compiled_ms for r in reports)
    cold = reports[0].compile_s
    print(
        f"torch {torch.__version__}，{torch.get_num_threads()} 个线程，{args.repeats} 轮取中位数："
    )
    print(f"eager 每步 {eager:.2f} ms，编译后每步 {compiled:.2f} ms，加速 {eager / compiled:.2f}×")
    saved = (eager - compiled) / 1e3
    payback = f"约 {cold / saved:,.0f} 个解码步回本" if saved > 0 else "编译后没有更快，不回本"
    print(f"第一次编译（空的编译缓存）{cold:.1f} s，{payback}")
    if len(reports) > 1:
        warm = statistics.median(r.compile_s for r in reports[1:])
        print(f"之后各轮命中磁盘上的编译缓存，编译 {warm:.1f} s")
    print(f"贪心输出与 eager 一致：{all(r.same_tokens for r in reports)}")


def cmd_fused(args: argparse.Namespace) -> None:
    from .triton_ops import add_rmsnorm_fused, add_rmsnorm_reference, traffic_bytes

    torch.manual_seed(0)
    print(
        "Triton 内核（无 GPU 时用 TRITON_INTERPRET=1 在 CPU 上解释执行）与未融合参考实现的最大差："
    )
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # CPU 上内核由解释器执行
    for dtype in (torch.float32, torch.bfloat16):
        x, res = (torch.randn(8, args.hidden, dtype=dtype).to(dev) for _ in range(2))
        w = torch.randn(args.hidden, dtype=dtype).to(dev)
        y0, r0 = add_rmsnorm_reference(x, res.clone(), w)
        y1, r1 = add_rmsnorm_fused(x, res.clone(), w)
        print(
            f"  {str(dtype).removeprefix('torch.')}："
            f"y {(y0.float() - y1.float()).abs().max():.1e}，"
            f"residual {(r0.float() - r1.float()).abs().max():.1e}"
        )
    print(f"\n显存读写量（BF16，hidden = {args.hidden}）：")
    print("| 行数（token） | 未融合 | 融合 | 比值 |")
    print("| --: | --: | --: | --: |")
    for rows in args.rows:
        t = traffic_bytes(rows, args.hidden)
        print(
            f"| {rows} | {fmt_bytes(t['unfused'])} | {fmt_bytes(t['fused'])} | "
            f"{t['unfused'] / t['fused']:.1f}× |"
        )


def cmd_bench_fused(args: argparse.Namespace) -> None:
    from .fused_bench import bench

    for line in bench(args.device, args.rows, args.hidden, args.repeats):
        print(line)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch10_advanced",
        description="第 10 章：沙箱、异构部署、MoE、视觉 token、torch.compile、"
        "FlashAttention、Triton 算子、查表低比特矩阵乘。",
    )
    sub = p.add_subparsers(dest="cmd")
    sb = sub.add_parser("sandbox", help="在沙箱里跑一组恶意代码，看每种限制怎样生效")
    sb.set_defaults(fn=cmd_sandbox)
    sv = sub.add_parser("serve-sandbox", help="以 HTTP 服务提供沙箱（POST /v1/run）")
    sv.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1）")
    sv.add_argument("--port", type=count, default=8100, help="端口（默认 8100）")
    sv.add_argument(
        "--max-concurrent", type=count, default=None, help="同时运行的沙箱数（默认 CPU 核数）"
    )
    sv.set_defaults(fn=cmd_serve_sandbox)
    h = sub.add_parser("hetero", help="按算术强度给训练与 rollout 选卡；一轮 RL 迭代的成本")
    h.add_argument(
        "--model",
        choices=sorted(load_models()),
        default="llama-3-8b",
        help="模型（默认 llama-3-8b）",
    )
    h.add_argument(
        "--price",
        type=price,
        nargs="+",
        metavar="GPU=USD",
        default=[("a100-80gb", 1.8), ("h100-sxm", 3.0), ("h200-sxm", 3.5)],
        help="参与比较的卡及每卡每小时美元（默认是示例假设）",
    )
    h.add_argument(
        "--microbatch", type=count, default=16384, help="训练微批的 token 数（默认 16384）"
    )
    h.add_argument("--batch", type=count, default=64, help="rollout 解码的并发序列数（默认 64）")
    h.add_argument(
        "--context", type=count, default=2048, help="rollout 的平均上下文长度（默认 2048）"
    )
    h.add_argument("--train-tokens", type=count, default=4_000_000, help="一轮训练的 token 数")
    h.add_argument(
        "--rollout-tokens", type=count, default=16_000_000, help="一轮 rollout 生成的 token 数"
    )
    h.set_defaults(fn=cmd_hetero)
    m = sub.add_parser("moe", help="top-k 路由、容量因子与丢弃、负载均衡损失")
    m.add_argument("--experts", type=count, default=8, help="专家数（默认 8）")
    m.add_argument("--top-k", type=count, default=2, help="每个 token 选几个专家（默认 2）")
    m.add_argument("--tokens", type=count, default=512, help="token 数（默认 512）")
    m.add_argument(
        "--capacity-factors",
        type=positive,
        nargs="+",
        default=[1.0, 1.25, 2.0],
        help="要比较的容量因子（默认 1.0 1.25 2.0）",
    )
    m.add_argument("--steps", type=count, default=200, help="训练路由器的步数（默认 200）")
    m.add_argument("--lr", type=positive, default=1.0, help="训练路由器的学习率（默认 1.0）")
    m.set_defaults(fn=cmd_moe)
    v = sub.add_parser("vision", help="一张图的视觉 token 数与预填充成本")
    v.add_argument(
        "--model",
        choices=sorted(load_models()),
        default="llama-3-8b",
        help="语言模型（默认 llama-3-8b）",
    )
    v.add_argument(
        "--sizes",
        type=image_size,
        nargs="+",
        default=[(224, 224), (448, 448), (768, 1024), (1080, 1920), (2160, 3840)],
        metavar="HxW",
        help="图像尺寸，高×宽，如 1080x1920",
    )
    v.add_argument("--text-tokens", type=int, default=128, help="提示里的文本 token 数（默认 128）")
    v.set_defaults(fn=cmd_vision)
    c = sub.add_parser("compile", help="torch.compile 用在小模型的解码步上：实测每步时间与编译时间")
    c.add_argument("--model", default=None, help="模型目录（默认用随书的小模型）")
    c.add_argument("--prompt", default="KV Cache 的作用是", help="提示")
    c.add_argument("--new-tokens", type=count, default=64, help="解码步数（默认 64）")
    c.add_argument("--repeats", type=count, default=3, help="重复轮数（默认 3）")
    c.add_argument("--threads", type=count, default=1, help="PyTorch CPU 线程数（默认 1）")
    c.add_argument(
        "--mode",
        choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs"],
        default="default",
        help="torch.compile 的 mode（默认 default）",
    )
    c.set_defaults(fn=cmd_compile)
    fu = sub.add_parser("fused", help="Triton 融合的残差加 + RMSNorm：正确性与显存读写量")
    fu.add_argument("--hidden", type=count, default=4096, help="隐藏维（默认 4096）")
    fu.add_argument("--rows", type=count, nargs="+", default=[1, 64, 4096], help="行数（token 数）")
    fu.set_defaults(fn=cmd_fused)
    fb = sub.add_parser(
        "bench-fused", help="实测融合与未融合的耗时（CPU：eager 对 torch.compile；GPU：对 Triton）"
    )
    fb.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="设备（默认 cpu）")
    fb.add_argument("--rows", type=count, default=256, help="行数（默认 256）")
    fb.add_argument("--hidden", type=count, default=4096, help="隐藏维（默认 4096）")
    fb.add_argument("--repeats", type=count, default=50, help="计时次数（默认 50，取中位数）")
    fb.set_defaults(fn=cmd_bench_fused)
    f = sub.add_parser("flash", help="分块注意力等于朴素注意力；两者的显存读写量（默认）")
    f.add_argument("--head-dim", type=count, default=128, help="每个头的维度 D（默认 128）")
    f.add_argument("--block", type=count, default=128, help="Q、K 的分块大小（默认 128）")
    f.add_argument(
        "--seq-lens",
        type=count,
        nargs="+",
        default=[1024, 4096, 16384],
        help="要比较的序列长度（默认 1024 4096 16384）",
    )
    f.set_defaults(fn=cmd_flash)
    lut = sub.add_parser("lut", help="查表低比特矩阵乘等于反量化后矩阵乘；运算次数")
    lut.add_argument("--in-features", type=count, default=256, help="输入维（默认 256）")
    lut.add_argument("--out-features", type=count, default=64, help="输出维（默认 64）")
    lut.add_argument("--group", type=count, default=32, help="量化分组大小（默认 32）")
    lut.add_argument("--bits", type=count, nargs="+", default=[1, 2, 3, 4], help="比特数")
    lut.set_defaults(fn=cmd_lut)
    return p


def image_size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit() or int(h) == 0 or int(w) == 0:
        raise argparse.ArgumentTypeError(
            f"图像尺寸写成 高x宽 的正整数，如 1080x1920，收到 {text!r}"
        )
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(build_parser, "flash", argv)
