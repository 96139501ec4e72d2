"""浮点低精度格式：FP8（E4M3 / E5M2，用 PyTorch 自带 dtype）与 FP4（E2M1，模拟）。

FP8 两种编码见 Micikevicius et al., "FP8 Formats for Deep Learning"（arXiv 2209.05433）：
E4M3 最大 448、没有无穷大（PyTorch 里叫 ``float8_e4m3fn``），E5M2 最大 57344。
FP4 E2M1 只能表示 ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}，必须配块缩放才能用：

- MXFP4（OCP Microscaling Formats v1.0）：每 32 个元素共用一个 E8M0 缩放，也就是 2 的整数次幂；
- NVFP4（NVIDIA Blackwell）：每 16 个元素共用一个 FP8 E4M3 缩放，外加整个张量一个 FP32 缩放。

这里的 FP4 是“模拟”：数值上严格按格式取整，存储仍用 float32，用来比较误差而不是测速度。
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FP8_DTYPES = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
FP4_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])  # E2M1 的全部非负值
FP4_MAX = 6.0
E2M1_EMAX = 2  # E2M1 最大规格化数 6 = 1.5 × 2^2


# --8<-- [start:fp8]
def fp8_quantize(x: Tensor, fmt: str = "e4m3", per_channel: bool = False) -> Tensor:
    """按张量（或按行）缩放到 FP8 的最大值附近，转成 FP8 再转回来。返回反量化后的 float32。"""
    dtype = FP8_DTYPES[fmt]
    fmax = torch.finfo(dtype).max  # e4m3: 448，e5m2: 57344
    x = x.float()
    amax = x.abs().amax(dim=-1, keepdim=True) if per_channel else x.abs().max()
    scale = amax.clamp(min=1e-12) / fmax
    return (x / scale).to(dtype).float() * scale
    # --8<-- [end:fp8]


# --8<-- [start:fp4]
def round_to_fp4(x: Tensor) -> Tensor:
    """把已经缩放好的值就近取整到 E2M1 网格（超出 ±6 截断，平局取尾数为偶的那个）。"""
    a = x.abs().clamp(max=FP4_MAX)
    mids = (FP4_GRID[1:] + FP4_GRID[:-1]) / 2  # 相邻网格点的中点
    idx = torch.bucketize(a, mids)  # a 恰好落在中点时取较小的一侧……
    tie = (idx < len(mids)) & (a == mids[idx.clamp(max=len(mids) - 1)])
    idx = torch.where(tie & (idx % 2 == 1), idx + 1, idx)  # ……再改成偶数下标（尾数为 0）
    return torch.sign(x) * FP4_GRID[idx]


def _blocks(x: Tensor, block: int) -> Tensor:
    if x.numel() % block:
        raise ValueError(f"元素个数 {x.numel()} 不是块大小 {block} 的倍数")
    return x.float().reshape(-1, block)


def mxfp4_quantize(x: Tensor, block: int = 32) -> Tensor:
    """MXFP4：块内共享缩放 2^(floor(log2(amax)) - 2)，缩放本身是 E8M0（只有指数）。"""
    b = _blocks(x, block)
    amax = b.abs().amax(dim=1, keepdim=True).clamp(min=2.0**-126)
    scale = torch.exp2(torch.floor(torch.log2(amax)) - E2M1_EMAX)  # 2 的整数次幂
    return (round_to_fp4(b / scale) * scale).reshape(x.shape)


def nvfp4_quantize(x: Tensor, block: int = 16) -> Tensor:
    """NVFP4：每块一个 E4M3 缩放（amax/6），再乘一个张量级 FP32 缩放，让块缩放落进 E4M3 范围。"""
    b = _blocks(x, block)
    e4m3_max = torch.finfo(torch.float8_e4m3fn).max
    global_scale = b.abs().max().clamp(min=1e-12) / (FP4_MAX * e4m3_max)
    block_scale = b.abs().amax(dim=1, keepdim=True) / FP4_MAX / global_scale
    block_scale = block_scale.to(torch.float8_e4m3fn).float()  # 块缩放本身只有 FP8 精度
    scale = (block_scale * global_scale).clamp(min=1e-30)
    return (round_to_fp4(b / scale) * scale).reshape(x.shape)
    # --8<-- [end:fp4]


def bits_per_element(name: str, in_features: int = 256) -> float:
    """各格式每个元素平均占用的位数（含缩放，张量级的一个数忽略不计）。"""
    table = {
        "FP8-E4M3": 8.0,
        "FP8-E5M2": 8.0,
        "MXFP4": 4 + 8 / 32,
        "NVFP4": 4 + 8 / 16,
    }
    if name in table:
        return table[name]
    bits = int(name[3])  # "INT4-g128" / "INT8-channel"
    group = int(name.split("-g")[1]) if "-g" in name else in_features
    return bits + 16 / group  # fp16 scale


def describe_fp8() -> list[tuple[str, float, float, int]]:
    """两种 FP8 的最大值、最小正规格化数与尾数位数，直接读 PyTorch 的 finfo。"""
    rows = []
    for fmt, dtype in FP8_DTYPES.items():
        fi = torch.finfo(dtype)
        rows.append((fmt.upper(), fi.max, fi.tiny, int(round(-math.log2(fi.eps)))))
    return rows
