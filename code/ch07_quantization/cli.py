"""``python -m ch07_quantization``：量化误差、格式、量化本书模型、INT4 打包、QAT、KV 量化、对齐。

不带子命令时运行 ``model``：把本书模型的线性层量化成 INT8 / INT4，比较显存、logits 与困惑度。
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from ch02_selector.cli import number, run_subcommand

from . import alignment, formats, kv_quant, qat
from .pack import pack_int4, unpack_int4
from .qmodel import (
    evaluate,
    finetune_ids,
    heldout_ids,
    linear_bytes,
    perplexity,
    quantize_model,
    weight_bytes,
)
from .quant import QuantSpec, error_metrics, fake_quantize

MODEL_HELP = "Hugging Face 格式的模型目录（默认用随书的小模型）"


def load(path: str | None):
    from tinyllm.hf import load_model

    return load_model(path)


def decoder_weights(model) -> list[torch.Tensor]:
    return [
        m.weight.detach()
        for layer in model.model.layers
        for m in layer.modules()
        if isinstance(m, torch.nn.Linear)
    ]


def weight_sqnr(weights: list[torch.Tensor], quant) -> float:
    """把所有线性层的误差合起来算一个 SQNR（dB）。"""
    ref = torch.cat([w.flatten() for w in weights])
    hat = torch.cat([quant(w).flatten() for w in weights])
    return error_metrics(ref, hat)["sqnr_db"]


def spec_from(bits: int, gran: str, symmetric: bool = True) -> QuantSpec:
    if gran.startswith("g"):
        return QuantSpec(bits, symmetric, "group", int(gran[1:]))
    return QuantSpec(bits, symmetric, gran)


GRANS = ("tensor", "channel", "g128", "g32")


def cmd_primitives(args) -> None:
    weights = decoder_weights(load(args.model))
    print(f"本书模型解码层的 {len(weights)} 个线性层权重，合并计算 SQNR（dB，越大越好）\n")
    print("| 位数 | 对称/非对称 | " + " | ".join(GRANS) + " |")
    print("|---|---|" + "--:|" * len(GRANS))
    curves: dict[str, list[tuple[int, float]]] = {g: [] for g in GRANS}
    for bits in (8, 4, 3, 2):
        for sym in (True, False):
            cells = []
            for g in GRANS:
                spec = spec_from(bits, g, sym)
                s = weight_sqnr(weights, lambda w, sp=spec: fake_quantize(w, sp))
                cells.append(f"{s:.1f}")
                if sym:
                    curves[g].append((bits, s))
            print(f"| INT{bits} | {'对称' if sym else '非对称'} | " + " | ".join(cells) + " |")
    if args.plot:
        from .plot import plot_error_vs_bits

        labels = {
            "tensor": "per-tensor",
            "channel": "per-channel",
            "g128": "group 128",
            "g32": "group 32",
        }
        out = plot_error_vs_bits(
            {labels[g]: pts for g, pts in curves.items()},
            "tinyllm decoder weights, symmetric INT quantization",
            args.plot,
        )
        print(f"\n图已保存到 {out}")


def capture_activations(model, ids: list[int]) -> torch.Tensor:
    """在留出文本上跑一遍，收集每个 down_proj 的输入（SwiGLU 之后，离群值最多的地方）。"""
    from .qmodel import windows

    seen: list[torch.Tensor] = []
    hooks = [
        layer.mlp.down_proj.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
        for layer in model.model.layers
    ]
    with torch.inference_mode():
        model(windows(ids)[:4, :-1])
    for h in hooks:
        h.remove()
    return torch.cat([a.reshape(-1, a.shape[-1]) for a in seen])  # (tokens, 688)


def format_table() -> dict:
    int_g = {g: spec_from(4, g) for g in ("g128", "g32")}
    return {
        "INT8-channel": lambda t: fake_quantize(t, QuantSpec(8)),
        "INT4-g128": lambda t: fake_quantize(t, int_g["g128"]),
        "INT4-g32": lambda t: fake_quantize(t, int_g["g32"]),
        "FP8-E4M3": lambda t: formats.fp8_quantize(t, "e4m3", per_channel=True),
        "FP8-E5M2": lambda t: formats.fp8_quantize(t, "e5m2", per_channel=True),
        "MXFP4": formats.mxfp4_quantize,
        "NVFP4": formats.nvfp4_quantize,
    }


def cmd_formats(args) -> None:
    model = load(args.model)
    weights = decoder_weights(model)
    acts = capture_activations(model, heldout_ids())
    gen = torch.Generator().manual_seed(args.seed)
    outlier = torch.randn(acts.shape[0], 256, generator=gen)
    outlier[:, :4] *= 50  # 合成的离群通道：4 个通道放大 50 倍（LLM.int8() 描述的现象）
    tensors = {"权重": weights, "down_proj 输入激活": [acts], "合成离群激活": [outlier]}
    print("同一批张量在各格式下的 SQNR（dB，越大越好）；位数含缩放因子的开销\n")
    print("| 格式 | 位/元素 | " + " | ".join(tensors) + " |")
    print("|---|--:|" + "--:|" * len(tensors))
    for name, fn in format_table().items():
        cells = [f"{weight_sqnr(ts, fn):.1f}" for ts in tensors.values()]
        print(f"| {name} | {formats.bits_per_element(name):.2f} | " + " | ".join(cells) + " |")
    print("\nFP8 两种编码（torch.finfo）：")
    for fmt, fmax, tiny, mant in formats.describe_fp8():
        print(f"  {fmt}: 最大 {fmax:g}，最小正规格化数 {tiny:g}，尾数 {mant} 位")


def model_specs() -> list[QuantSpec]:
    return [
        QuantSpec(8, True, "channel"),
        QuantSpec(4, True, "group", 128),
        QuantSpec(4, True, "group", 32),
        QuantSpec(4, False, "group", 128),
        QuantSpec(4, True, "channel"),
        QuantSpec(3, True, "channel"),
    ]


def cmd_model(args) -> None:
    model, ids = load(args.model), heldout_ids()
    base, ref = evaluate(model, ids)
    print(f"留出文本 {len(ids)} 字节；线性层之外（嵌入、lm_head、RMSNorm）保持 bf16\n")
    print("| 权重 | 总权重 | 线性层 | 困惑度 | KL(原‖量化) | top-1 一致 | logits 最大偏差 |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    mb = 1024 * 1024  # 输出按 MiB（2^20 字节）
    total, linear = weight_bytes(model) / mb, linear_bytes(model) / mb
    print(
        f"| BF16（原模型） | {total:.2f} MiB | {linear:.2f} MiB | {base['ppl']:.3f} | — | — | — |"
    )
    for spec in model_specs():
        q = quantize_model(model, spec)
        d, _ = evaluate(q, ids, ref)
        print(
            f"| {spec.label()} | {weight_bytes(q) / mb:.2f} MiB | {linear_bytes(q) / mb:.2f} MiB | "
            f"{d['ppl']:.3f} | {d['kl']:.4f} | {d['top1_agree']:.1%} | "
            f"{d['max_logit_diff']:.2f} |"
        )


def cmd_pack(args) -> None:
    q = torch.tensor([[-8, -1, 0, 1, 2, 3, 7, -7]])
    word = pack_int4(q)
    print(f"8 个 INT4：{q.tolist()[0]}")
    print(f"打包成 1 个 int32：{int(word):d}（十六进制 0x{int(word) & 0xFFFFFFFF:08X}）")
    print(f"解包：{unpack_int4(word).tolist()[0]}")
    model = quantize_model(load(args.model), QuantSpec(4, True, "group", 128))
    from .qmodel import QuantLinear

    layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    packed = sum(m.qweight.numel() * 4 for m in layers)
    print(
        f"\n本书模型 {len(layers)} 个线性层：INT4 打包后 {packed:,} 字节"
        f"（int8 存同样的值要 {packed * 2:,} 字节）"
    )


def cmd_qat(args) -> None:
    spec = spec_from(args.bits, args.granularity)
    model, ids = load(args.model), heldout_ids()
    data = finetune_ids()
    fc = qat.FinetuneConfig(steps=args.steps, seed=args.seed)
    ft = qat.finetune(model, data, fc, None)
    qt = qat.finetune(model, data, fc, spec)
    rows = [
        ("原模型（BF16）", perplexity(model, ids)),
        (f"原模型 + PTQ {spec.label()}", perplexity(quantize_model(model, spec), ids)),
        (f"普通微调 {fc.steps} 步（浮点）", perplexity(ft, ids)),
        (f"普通微调 {fc.steps} 步 + PTQ", perplexity(quantize_model(ft, spec), ids)),
        (f"QAT {fc.steps} 步 + 真量化", perplexity(quantize_model(qt, spec), ids)),
    ]
    print(f"\n{spec.label()}，留出文本困惑度（越低越好）\n")
    print("| 做法 | 困惑度 |\n|---|--:|")
    for name, ppl in rows:
        print(f"| {name} | {ppl:.3f} |")


def cmd_kv(args) -> None:
    model, ids = load(args.model), heldout_ids()
    base = kv_quant.bytes_per_token(model, "none")
    print("| KV 存储 | 字节/token | 相对 BF16 | 困惑度 | KL(原‖量化) | top-1 一致 |")
    print("|---|--:|--:|--:|--:|--:|")
    for mode in kv_quant.KV_MODES:
        r = kv_quant.kv_eval(model, ids, mode)
        b = kv_quant.bytes_per_token(model, mode)
        name = "BF16（不量化）" if mode == "none" else mode
        print(
            f"| {name} | {b:.0f} | {b / base:.0%} | {r['ppl']:.3f} | {r['kl']:.5f} | "
            f"{r['top1_agree']:.1%} |"
        )


def cmd_align(args) -> None:
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(64, 4096, generator=gen)
    w = torch.randn(4096, 256, generator=gen) / 64
    ref = alignment.matmul_reference(x, w)
    print("1) 同一个矩阵乘 (64×4096)·(4096×256)，与 fp64 参照的最大绝对误差\n")
    print("| 累加精度 | split-K 段数 | 最大误差 | assert_close（按该精度默认容差） |")
    print("|---|--:|--:|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for splits in (1, 4, 16):
            y = alignment.matmul_splitk(x, w, splits, dtype)
            ok, msg = alignment.check_close(y, ref, dtype)
            print(f"| {str(dtype)[6:]} | {splits} | {(y - ref).abs().max().item():.2e} | {msg} |")
    base = alignment.matmul_splitk(x, w, 1, torch.bfloat16)
    cand = alignment.matmul_splitk(x, w, 16, torch.bfloat16)
    ok, err, b = alignment.check_against_reference(cand, base, ref)
    print(
        f"\n相对基线判据：bf16 split-K=16 的误差 {err:.2e}，同精度基线 {b:.2e}，"
        f"{'通过' if ok else '不通过'}（上限 2 倍）"
    )

    model = load(args.model)
    from tinyllm.tokenizer import ByteTokenizer

    prompt = ByteTokenizer().encode(args.prompt)
    r = alignment.decode_drift(model, alignment.lowp_copy(model), prompt, args.steps)
    size = args.steps // 8 or 1
    print(f"\n2) fp32（训练侧）vs bf16（推理侧），同一份权重，沿 {args.steps} 步贪心序列逐步比较\n")
    print("| 步 | 平均 KL | 所选 token 的 |Δlog p| |\n|---|--:|--:|")
    for i, (kl, gap) in enumerate(
        zip(
            alignment.bucket_means(r["kl"], size),
            alignment.bucket_means(r["logp_gap"], size),
            strict=True,
        )
    ):
        print(f"| {i * size}–{min((i + 1) * size, args.steps) - 1} | {kl:.2e} | {gap:.4f} |")
    fd = r["first_divergence"]
    where = "没有分叉" if fd is None else f"第 {fd} 步第一次选了不同的 token"
    print(f"\n自由生成：两边各自贪心，{where}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch07_quantization",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", metavar="子命令")

    s = sub.add_parser("primitives", help="INT8/4/3/2 × 粒度 × 对称性的权重量化误差")
    s.add_argument("--plot", type=Path, help="把误差随位数变化的曲线存成 SVG")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_primitives)

    s = sub.add_parser("formats", help="INT8、INT4、FP8、MXFP4、NVFP4 在同一批张量上的误差")
    s.add_argument("--seed", type=int, default=0, help="合成离群激活的随机种子")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_formats)

    s = sub.add_parser("model", help="量化本书模型：显存、logits、困惑度")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_model)

    s = sub.add_parser("pack", help="INT4 位打包演示与本书模型的打包大小")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_pack)

    s = sub.add_parser("qat", help="PTQ vs 普通微调 + PTQ vs QAT（2 核 CPU 上约 1 分钟）")
    s.add_argument("--bits", type=int, choices=(2, 3, 4, 8), default=3, help="权重位数")
    s.add_argument("--granularity", choices=GRANS, default="channel", help="量化粒度")
    s.add_argument(
        "--steps",
        type=number("--steps", integer=True, upper=2000),
        default=60,
        help="两种微调各跑的步数",
    )
    s.add_argument("--seed", type=int, default=0, help="随机种子")
    s.add_argument(
        "--docs", type=Path, default=Path("docs"), help="本书 docs/ 目录（取随书检查点的训练页面）"
    )
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_qat)

    s = sub.add_parser("kv", help="KV Cache 量化：INT8/INT4/FP8 的字节数与误差")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_kv)

    s = sub.add_parser("align", help="精度对齐：split-K 累加、容差写法、fp32 vs bf16 逐步误差")
    s.add_argument(
        "--steps",
        type=number("--steps", integer=True, upper=500),
        default=256,
        help="比较的解码步数",
    )
    s.add_argument("--prompt", default="KV Cache 的作用是", help="提示词")
    s.add_argument("--seed", type=int, default=0, help="随机矩阵的种子")
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(fn=cmd_align)
    return p


def main(argv: list[str] | None = None) -> int:
    torch.manual_seed(0)
    return run_subcommand(build_parser, "model", argv)
