"""``python -m ch10_advanced``：FlashAttention 的正确性与访存量、查表低比特矩阵乘。

不带子命令时运行 ``flash``。输出只含与机器无关的数字（误差、读写字节数、运算次数）。
"""

from __future__ import annotations

import argparse

import torch
from ch01_economics.cli import count
from ch02_selector.cli import run_subcommand

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
        print(f"| {n} | {fmt_bytes(na)} | {fmt_bytes(nb)} | {na / nb:.1f}× | "
              f"{fmt_bytes(2 * n * n)} | {fmt_bytes(2 * args.block * args.block)} |")  # fmt: skip


def cmd_lut(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    w = torch.randn(args.out_features, args.in_features, dtype=torch.float64)
    x = torch.randn(4, args.in_features, dtype=torch.float64)
    print(f"权重 {args.out_features}×{args.in_features}，每组 {args.group} 个一套 scale/zero，"
          f"查表分组 g = 4：")  # fmt: skip
    print(
        "| 比特 | 查表与反量化的最大差 | 量化误差（相对） | 乘加（反量化） | 查表次数 | 建表加法 |"
    )
    print("| --: | --: | --: | --: | --: | --: |")
    for bits in args.bits:
        qw = quantize(w, bits, args.group)
        ref = matmul_dequant(x, qw)
        err = (matmul_lut(x, qw) - ref).abs().max().item()
        rel = ((ref - x @ w.T).norm() / (x @ w.T).norm()).item()
        ops = op_counts(1, args.in_features, args.out_features, bits)
        print(f"| {bits} | {err:.1e} | {rel:.3f} | {ops['dequant_macs']:,} | "
              f"{ops['lut_lookups']:,} | {ops['lut_table_adds']:,} |")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch10_advanced",
        description="第 10 章：FlashAttention 的分块与访存量、查表实现的低比特矩阵乘。",
    )
    sub = p.add_subparsers(dest="cmd")
    f = sub.add_parser("flash", help="分块注意力等于朴素注意力；两者的显存读写量（默认）")
    f.add_argument("--head-dim", type=count, default=128, help="每个头的维度 D（默认 128）")
    f.add_argument("--block", type=count, default=128, help="Q、K 的分块大小（默认 128）")
    f.add_argument("--seq-lens", type=count, nargs="+", default=[1024, 4096, 16384],
                   help="要比较的序列长度（默认 1024 4096 16384）")  # fmt: skip
    f.set_defaults(fn=cmd_flash)
    lut = sub.add_parser("lut", help="查表低比特矩阵乘等于反量化后矩阵乘；运算次数")
    lut.add_argument("--in-features", type=count, default=256, help="输入维（默认 256）")
    lut.add_argument("--out-features", type=count, default=64, help="输出维（默认 64）")
    lut.add_argument("--group", type=count, default=32, help="量化分组大小（默认 32）")
    lut.add_argument("--bits", type=count, nargs="+", default=[1, 2, 3, 4], help="比特数")
    lut.set_defaults(fn=cmd_lut)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(build_parser, "flash", argv)
