"""``python -m ch03_gpu``：显存计算、GPU 规格与性价比、Roofline 瓶颈诊断、GPU 监控。

不带子命令时运行演示：Llama-3-8B 的显存账与它在 H100 上的瓶颈分类。
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path

from ch01_economics import cost_per_million_tokens
from ch02_selector.cli import number
from tinyllm import PRESETS, ModelConfig

from .monitor import cpu_samples, format_sample, gpu_name, nvml_samples
from .plot import plot_roofline
from .roofline import (
    BOUND_ZH,
    Hardware,
    classify,
    decode,
    measure_this_machine,
    prefill,
    time_forward,
)
from .specs import load_gpus, markdown_table
from .vram import DTYPE_BYTES, GB, estimate, kv_bytes_per_token, load_models, max_kv_tokens

# 每个 CUDA kernel 的启动开销：NVIDIA 驱动 + 运行时的一次提交约 4–6 µs（见 3.5 节出处），取 5 µs。
DEFAULT_GPU_OVERHEAD_US = 5.0
# 与 vLLM 0.33.0 的 --gpu-memory-utilization 默认值一致（vllm/config/cache.py）。
DEFAULT_UTILIZATION = 0.92


def model_choices() -> list[str]:
    return [*load_models(), "tinyllm"]


def resolve_model(args) -> tuple[str, ModelConfig]:
    if args.config:
        try:
            raw = json.loads(Path(args.config).read_text("utf-8"))
            return Path(args.config).parent.name or "config", ModelConfig.from_hf_dict(raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"读不了 {args.config}：{e}") from None
    if args.model == "tinyllm":
        return "tinyllm (default)", PRESETS["default"]
    name, cfg, _ = load_models()[args.model]
    return name, cfg


def params_text(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.1f}M"


def gb(x: float) -> str:
    return f"{x / GB:8.2f} GB"


# --8<-- [start:vram-cli]
def cmd_vram(args) -> None:
    name, cfg = resolve_model(args)
    if args.kv_heads:
        cfg = dataclasses.replace(cfg, num_key_value_heads=args.kv_heads)  # 重新校验
    kv_dtype = args.kv_dtype or args.dtype
    b = estimate(
        cfg,
        args.context,
        args.batch,
        args.dtype,
        kv_dtype,
        args.chunk_tokens,
        args.overhead_gb,
        args.tp,
    )
    kind = {1: "MQA", cfg.num_attention_heads: "MHA"}.get(cfg.num_key_value_heads, "GQA")
    print(
        f"模型：{name}，{params_text(cfg.num_parameters())} 参数，{cfg.num_hidden_layers} 层，"
        f"{cfg.num_attention_heads} 个 Q 头 / {cfg.num_key_value_heads} 个 KV 头（{kind}）"
    )
    print(f"精度：权重 {args.dtype}，KV Cache {kv_dtype}；张量并行 TP={args.tp}（以下为每卡）")
    per_tok = kv_bytes_per_token(cfg, kv_dtype)
    print(
        f"每 token 的 KV：2 × {cfg.num_hidden_layers} 层 × {cfg.num_key_value_heads} 头 × "
        f"{cfg.head_dim} 维 × {DTYPE_BYTES[kv_dtype]:g} B = {per_tok / 1024:,.0f} KiB"
    )
    print(f"  权重        {gb(b.weights)}")
    print(f"  KV Cache    {gb(b.kv_cache)}   （{args.batch} 条 × {args.context} token）")
    print(f"  激活值      {gb(b.activations)}   （每次前向最多 {args.chunk_tokens} token）")
    print(f"  运行时开销  {gb(b.overhead)}   （CUDA 上下文等，按 --overhead-gb 假设）")
    print(f"  合计        {gb(b.total)}")
    if args.gpu:
        gpu = load_gpus()[args.gpu]
        usable = gpu.memory_gb * args.utilization
        verdict = "放得下" if b.total <= usable * GB else "放不下"
        print(
            f"{gpu.name}：{gpu.memory_gb:g} GB × {args.utilization:g} = {usable:.1f} GB 可用，"
            f"{verdict}"
        )
        tokens = max_kv_tokens(
            cfg,
            gpu.memory_gb,
            args.utilization,
            dtype=args.dtype,
            kv_dtype=kv_dtype,
            chunk_tokens=args.chunk_tokens,
            overhead_gb=args.overhead_gb,
            tp=args.tp,
        )
        print(
            f"  KV Cache 最多容纳 {tokens:,} token ≈ {tokens // args.context} 条 "
            f"{args.context} token 的请求同时在跑"
        )
    # --8<-- [end:vram-cli]


def cmd_specs(args) -> None:
    gpus = [g for g in load_gpus().values() if args.segment in (None, g.segment)]
    if args.markdown:
        print(markdown_table(gpus))
        return
    print(f"{'GPU':<26}{'显存':>8}{'带宽 GB/s':>11}{'BF16 TF':>9}{'屋脊点':>8}{'扫一遍显存':>12}")
    for g in gpus:
        ridge = f"{g.ridge_flop_per_byte:8.0f}" if g.ridge_flop_per_byte else f"{'—':>8}"
        sweep = f"{g.sweep_ms:9.1f} ms" if g.sweep_ms else f"{'—':>12}"
        bw = f"{g.bandwidth_gbps:11,.0f}" if g.bandwidth_gbps else f"{'—':>11}"
        bf16 = f"{g.bf16_tflops:9.1f}" if g.bf16_tflops else f"{'—':>9}"
        print(f"{g.name:<26}{g.memory_gb:>6g}GB{bw}{bf16}{ridge}{sweep}")
    if args.price:
        print_price_performance(args)


# --8<-- [start:price-performance]
def print_price_performance(args) -> None:
    """带宽受限的解码：每步读一遍权重和全部 KV，batch 条请求共享这一次读取。"""
    name, cfg = resolve_model(args)
    gpus = load_gpus()
    step = decode(cfg, args.batch, args.context, args.dtype)  # 一步解码要搬运的字节
    need = estimate(
        cfg, args.context, args.batch, args.dtype
    ).total  # 显存账（vram 子命令同一公式）
    print(
        f"\n性价比：{name}（{args.dtype}），批量 {args.batch}、上下文 {args.context}，"
        "解码按带宽上限估算"
    )
    print(f"{'GPU':<26}{'$/小时':>8}{'tok/s 上限':>12}{'$/百万 token':>14}")
    for key, usd in args.price:
        g = gpus[key]
        if g.bandwidth_gbps is None or need > g.memory_gb * GB * DEFAULT_UTILIZATION:
            print(f"{g.name:<26}{usd:>8.2f}{'放不下或缺带宽数据':>20}")
            continue
        tok_s = args.batch / (step.bytes / (g.bandwidth_gbps * 1e9))
        usd_per_m = cost_per_million_tokens(usd, tok_s)
        print(f"{g.name:<26}{usd:>8.2f}{tok_s:>12,.0f}{usd_per_m:>14.3f}")
    # --8<-- [end:price-performance]


def hardware(args) -> Hardware:
    if args.measure:
        print(
            "正在测量本机：带宽（拷贝 256 MB）、矩阵乘（1024²，fp32）、单算子开销……",
            file=sys.stderr,
        )
        return measure_this_machine()
    g = load_gpus()[args.gpu]
    if g.bf16_tflops is None or g.bandwidth_gbps is None:
        raise ValueError(f"{g.name} 缺少算力或带宽数据，无法画 Roofline")
    return Hardware(g.name, g.bf16_tflops, g.bandwidth_gbps, args.overhead_us)


def workloads(args, cfg: ModelConfig):
    """三个工作负载及其形状 (batch, 新 token 数, 历史长度)，形状用于实测。"""
    dtype = "fp32" if args.measure else args.dtype  # 实测本机时按 fp32（CPU 上跑的就是 fp32）
    return [
        (prefill(cfg, 1, args.prompt, dtype), (1, args.prompt, 0)),
        (decode(cfg, 1, args.prompt, dtype), (1, 1, args.prompt)),
        (decode(cfg, args.batch, args.prompt, dtype), (args.batch, 1, args.prompt)),
    ]


# --8<-- [start:roofline-cli]
def cmd_roofline(args) -> None:
    name, cfg = resolve_model(args)
    hw = hardware(args)
    ridge = hw.peak_tflops * 1e12 / (hw.bandwidth_gbps * 1e9)
    print(
        f"硬件：{hw.name}，{hw.peak_tflops:.3g} TFLOPS，{hw.bandwidth_gbps:.4g} GB/s，"
        f"每算子开销 {hw.overhead_us:.2g} µs；屋脊点 {ridge:.0f} FLOP/B"
    )
    print(f"模型：{name}")
    model = None
    if args.measure and args.model == "tinyllm" and not args.config:
        from tinyllm import load_default

        model = load_default()  # 同时实测真实前向，与预测对照
    head = f"{'workload':<24}{'FLOP/B':>9}{'compute':>10}{'memory':>10}{'overhead':>10}"
    print(head + ("  measured" if model else "") + "  判断（时间单位 ms）")
    for w, shape in workloads(args, cfg):
        v = classify(w, hw)
        measured = f"{time_forward(model, *shape) * 1e3:>10.3f}" if model else ""
        print(
            f"{w.name:<24}{w.intensity:>9.1f}{v.compute_s * 1e3:>10.3f}{v.memory_s * 1e3:>10.3f}"
            f"{v.overhead_s * 1e3:>10.3f}{measured}  {BOUND_ZH[v.bound]}"
        )
    # --8<-- [end:roofline-cli]


def cmd_plot(args) -> None:
    name, cfg = resolve_model(args)
    hw = hardware(args)
    out = plot_roofline(hw, [classify(w, hw) for w, _ in workloads(args, cfg)], args.out)
    print(f"已写入 {out}")


def cmd_monitor(args) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=busy_model, args=(stop,), daemon=True)
    if args.load:
        worker.start()
    try:
        import pynvml

        try:
            title = f"GPU {args.gpu_index}：{gpu_name(args.gpu_index)}（nvidia-ml-py）"
            samples = nvml_samples(args.gpu_index, args.interval, args.count)
        except pynvml.NVMLError as e:
            print(f"没有可用的 NVIDIA GPU（NVML：{e}），改为监控 CPU 与内存。")
            title, samples = "CPU（psutil）", cpu_samples(args.interval, args.count)
        print(title)
        for s in samples:
            print(format_sample(s), flush=True)
    finally:
        stop.set()
        if worker.is_alive():
            worker.join()  # 等后台生成结束再退出：线程还在 PyTorch 里时退出进程会崩溃


def busy_model(stop: threading.Event) -> None:
    """后台负载：让本书的小模型不停地生成，监控曲线才有起伏。"""
    from tinyllm import ByteTokenizer, generate, load_default

    try:
        model, tok = load_default(), ByteTokenizer()
    except FileNotFoundError as e:
        print(f"后台负载没有启动：{e}", file=sys.stderr)
        return
    while not stop.is_set():
        generate(model, tok.encode("显存"), 32)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ch03_gpu", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")

    def model_args(sp):
        sp.add_argument(
            "--model",
            choices=model_choices(),
            default="llama-3-8b",
            help="内置模型结构（默认 llama-3-8b）",
        )
        sp.add_argument("--config", help="改用任意 Hugging Face config.json（Llama/Qwen 式）")
        sp.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="bf16", help="权重精度")

    v = sub.add_parser("vram", help="估算推理显存：权重 + KV Cache + 激活 + 开销")
    model_args(v)
    v.add_argument("--kv-dtype", choices=sorted(DTYPE_BYTES), help="KV Cache 精度（默认同权重）")
    v.add_argument("--context", type=number("上下文长度", integer=True), default=8192)
    v.add_argument(
        "--batch", type=number("并发数", integer=True), default=1, help="同时在跑的请求数"
    )
    v.add_argument(
        "--chunk-tokens",
        type=number("prefill 块大小", integer=True),
        default=2048,
        help="一次前向最多处理多少 token（决定激活峰值，默认 2048）",
    )
    v.add_argument("--overhead-gb", type=float, default=1.0, help="运行时开销假设（默认 1 GB）")
    v.add_argument("--tp", type=number("张量并行度", integer=True), default=1, help="张量并行卡数")
    v.add_argument(
        "--kv-heads",
        type=number("KV 头数", integer=True),
        help="覆盖 KV 头数，对比 MHA / GQA / MQA",
    )
    v.add_argument("--gpu", choices=sorted(load_gpus()), help="检查能否放进这块 GPU")
    v.add_argument(
        "--utilization",
        type=number("显存占比", upper=1.0),
        default=DEFAULT_UTILIZATION,
        help="可用显存比例（对应 vLLM 的 --gpu-memory-utilization；vLLM 0.33.0 默认 0.92）",
    )
    v.set_defaults(func=cmd_vram)

    s = sub.add_parser("specs", help="GPU 规格表（每行有出处）与性价比")
    s.add_argument("--segment", choices=("consumer", "datacenter"))
    s.add_argument("--markdown", action="store_true", help="输出 Markdown 表格")
    s.add_argument(
        "--price",
        type=price,
        action="append",
        help="GPU 每小时价格，如 h100-sxm=2.5（可重复）；给出即计算性价比",
    )
    model_args(s)
    s.add_argument("--batch", type=number("批量", integer=True), default=32)
    s.add_argument(
        "--context",
        type=number("上下文长度", integer=True),
        default=1024,
        help="性价比按每条请求已有多少 token 的 KV 计算（默认 1024）",
    )
    s.set_defaults(func=cmd_specs, model="llama-3-8b")

    for name, fn, helptext in (
        ("roofline", cmd_roofline, "预填充 vs 解码：算术强度与瓶颈分类"),
        ("plot", cmd_plot, "画 Roofline 图"),
    ):
        r = sub.add_parser(name, help=helptext)
        model_args(r)
        r.add_argument("--gpu", choices=sorted(load_gpus()), default="h100-sxm")
        r.add_argument("--measure", action="store_true", help="改用本机实测的带宽、算力与开销")
        r.add_argument("--batch", type=number("批量", integer=True), default=64)
        r.add_argument("--prompt", type=number("提示长度", integer=True), default=1024)
        r.add_argument(
            "--overhead-us",
            type=number("开销"),
            default=DEFAULT_GPU_OVERHEAD_US,
            help="GPU 上每个 kernel 的启动开销（µs，默认 5）",
        )
        r.set_defaults(func=fn)
        if name == "plot":
            r.add_argument("--out", type=Path, required=True, help="输出文件（.svg 或 .png）")

    m = sub.add_parser("monitor", help="用 nvidia-ml-py 采样 GPU；无 GPU 时采样 CPU")
    m.add_argument("--count", type=number("采样次数", integer=True), default=6)
    m.add_argument("--interval", type=number("间隔"), default=0.5, help="采样间隔（秒）")
    m.add_argument("--gpu-index", type=int, default=0)
    m.add_argument("--load", action="store_true", help="同时在后台跑小模型，制造负载")
    m.set_defaults(func=cmd_monitor)
    return p


def price(text: str) -> tuple[str, float]:
    key, _, usd = text.partition("=")
    if key not in load_gpus():
        raise argparse.ArgumentTypeError(f"未知 GPU {key!r}，可选：{', '.join(load_gpus())}")
    try:
        value = float(usd)
    except ValueError:
        raise argparse.ArgumentTypeError(f"价格需要数字，如 h100-sxm=2.5，收到 {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"价格必须为正，收到 {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.cmd is None:  # 演示
        args = p.parse_args(["vram", "--model", "llama-3-8b", "--gpu", "h100-sxm"])
        args.func(args)
        print()
        args = p.parse_args(["roofline", "--model", "llama-3-8b"])
    if getattr(args, "overhead_gb", 0) < 0:
        p.error("--overhead-gb 不能为负")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    return 0
