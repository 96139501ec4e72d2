"""INT4 位打包：8 个 4 位整数装进一个 int32，用移位和掩码解开。

GPTQ 格式的 ``qweight`` 就是这样沿输入维每 8 个 INT4 装一个 int32（AWQ 沿输出维装，
并且 8 个值的顺序是交错的）；SGLang / vLLM 的 Marlin 内核在 GPU 上做同样的“移位 + 与 0xF”
解包，只是为了向量化又重排了一次布局。这里用最朴素的顺序：第 i 个值占第 4i..4i+3 位。
"""

from __future__ import annotations

import torch
from torch import Tensor

PER_INT32 = 8  # 32 位 / 4 位
OFFSET = 8  # 有符号 [-8, 7] 加 8 变成无符号 [0, 15] 再存


# --8<-- [start:pack]
def pack_int4(q: Tensor, signed: bool = True) -> Tensor:
    """q: (..., n) 整数，有符号取值 [-8, 7]（无符号 [0, 15]），n 是 8 的倍数 → (..., n/8) int32。"""
    if q.shape[-1] % PER_INT32:
        raise ValueError(f"最后一维 {q.shape[-1]} 不是 8 的倍数")
    lo = -OFFSET if signed else 0
    if q.numel() and (q.min() < lo or q.max() > lo + 15):
        raise ValueError(f"INT4 取值必须在 [{lo}, {lo + 15}]")
    nibbles = (q.to(torch.int64) - lo).reshape(*q.shape[:-1], -1, PER_INT32)  # (..., n/8, 8)
    shifts = torch.arange(PER_INT32) * 4  # 0, 4, ..., 28
    word = (nibbles << shifts).sum(dim=-1)  # 各占 4 位，互不重叠，相加即按位或
    word = torch.where(word >= 2**31, word - 2**32, word)  # 最高位为 1 时按补码解释成负数
    return word.to(torch.int32)


def unpack_int4(packed: Tensor, signed: bool = True) -> Tensor:
    """(..., m) int32 → (..., 8m) int16，取值 [-8, 7]（无符号 [0, 15]）。"""
    shifts = torch.arange(PER_INT32, dtype=torch.int32) * 4
    nibbles = (packed[..., None] >> shifts) & 0xF  # 算术右移会带进符号位，& 0xF 把它去掉
    return (nibbles - (OFFSET if signed else 0)).to(torch.int16).flatten(-2)
    # --8<-- [end:pack]
