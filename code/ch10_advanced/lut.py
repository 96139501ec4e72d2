"""边缘设备上的低比特矩阵乘：查表代替乘法（10.8 节）。

b 比特的权重 q ∈ [0, 2^b) 可以拆成 b 个比特平面：q = Σᵢ 2ⁱ·Bᵢ，Bᵢ ∈ {0, 1}。对一行激活 x，
把相邻 g 个元素分成一组，预先算出这 g 个数所有 2^g 种“选或不选”的部分和，存成一张表；之后每个
比特平面上、每组 g 个比特正好拼成表的下标，一次查表就代替了 g 次乘加。表对同一行激活的所有输出
通道共用，输出通道越多越划算。这是 T-MAC（Wei 等，arXiv:2407.00088）在 CPU 上做低比特推理的思路；
这里用 PyTorch 的张量索引写出同样的计算，测试证明它与“先反量化、再矩阵乘”的结果相同。
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


# --8<-- [start:quantize]
@dataclass(frozen=True)
class QuantizedWeight:
    q: Tensor  # (out, in) 的整数，取值 0 .. 2^bits − 1
    scale: Tensor  # (out, in // group)
    zero: Tensor  # (out, in // group)，以量化单位计的零点
    bits: int
    group: int


def quantize(w: Tensor, bits: int = 2, group: int = 32) -> QuantizedWeight:
    """按组（沿输入维）做非对称的最小-最大量化：w ≈ scale · (q − zero)。"""
    if not 1 <= bits <= 8:
        raise ValueError("bits 须在 1 到 8 之间")
    out_features, in_features = w.shape
    if group < 1 or in_features % group:
        raise ValueError(f"输入维 {in_features} 须能被 group={group} 整除")
    g = w.reshape(out_features, in_features // group, group)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((hi - lo) / (2**bits - 1)).clamp_min(torch.finfo(w.dtype).tiny)
    zero = -lo / scale
    q = torch.round(g / scale[..., None] + zero[..., None]).clamp(0, 2**bits - 1)
    return QuantizedWeight(q.reshape(out_features, in_features).to(torch.uint8), scale, zero, bits,
                           group)  # fmt: skip


def dequantize(qw: QuantizedWeight) -> Tensor:
    out_features, in_features = qw.q.shape
    g = qw.q.reshape(out_features, in_features // qw.group, qw.group).to(qw.scale.dtype)
    return ((g - qw.zero[..., None]) * qw.scale[..., None]).reshape(out_features, in_features)


def matmul_dequant(x: Tensor, qw: QuantizedWeight) -> Tensor:
    """参照实现：先把权重还原成浮点，再做普通矩阵乘。x: (M, in) → (M, out)。"""
    return x @ dequantize(qw).T
    # --8<-- [end:quantize]


# --8<-- [start:lut]
def build_tables(x: Tensor, g: int) -> Tensor:
    """x: (M, K) → (M, K/g, 2^g)：每组 g 个激活所有子集的和。下标的第 j 位表示选不选第 j 个。"""
    m, k = x.shape
    groups = x.reshape(m, k // g, g)
    bits = (torch.arange(2**g)[:, None] >> torch.arange(g)) & 1  # (2^g, g)
    return groups @ bits.T.to(x.dtype)  # (M, K/g, 2^g)


def matmul_lut(x: Tensor, qw: QuantizedWeight, g: int = 4) -> Tensor:
    """与 :func:`matmul_dequant` 相同的结果，但权重只用来查表，不参与乘法。"""
    m, k = x.shape
    if g < 1 or qw.group % g:
        raise ValueError(f"查表分组 g={g} 须整除量化分组 {qw.group}")
    tables = build_tables(x, g)  # (M, K/g, 2^g)：所有输出通道共用
    out_features = qw.q.shape[0]
    weights = 1 << torch.arange(g)  # 把 g 个比特拼成下标
    col = torch.arange(k // g)[None, :]
    qsum = torch.zeros(m, out_features, k // g, dtype=x.dtype)  # 每组的 Σ q·x
    for b in range(qw.bits):  # 逐个比特平面
        plane = ((qw.q >> b) & 1).reshape(out_features, k // g, g).to(torch.long)
        index = (plane * weights).sum(-1)  # (out, K/g)：这一平面上每组比特的下标
        qsum += (1 << b) * tables[:, col, index]  # 查表：(M, out, K/g)
    per_group = qw.group // g  # 一个量化组里有几个查表组
    qsum = qsum.reshape(m, out_features, k // qw.group, per_group).sum(-1)  # (M, out, K/group)
    xsum = x.reshape(m, k // qw.group, qw.group).sum(-1)[:, None, :]  # (M, 1, K/group)：零点项
    return ((qsum - qw.zero * xsum) * qw.scale).sum(-1)  # (M, out)
    # --8<-- [end:lut]


# --8<-- [start:ops]
def op_counts(m: int, k: int, n: int, bits: int, g: int = 4) -> dict[str, int]:
    """每种做法的主要运算次数：反量化后矩阵乘是 M·K·N 次乘加；查表是建表的加法
    （M·(K/g)·2^g，与 N 无关）加上 bits·M·N·(K/g) 次查表累加。"""
    return {
        "dequant_macs": m * k * n,
        "lut_table_adds": m * (k // g) * 2**g,
        "lut_lookups": bits * m * n * (k // g),
    }
    # --8<-- [end:ops]
