"""FlashAttention 的核心：分块计算注意力、用在线 softmax 拼出精确结果，并数一数读写了多少显存。

朴素的注意力先算出 N×N 的分数矩阵 S = QKᵀ/√d，写回显存，再读出来做 softmax 得到 P，再写回、
再读出来乘 V。N 一大，这两个 N×N 矩阵的读写就成了瓶颈。FlashAttention（Dao 等，NeurIPS 2022，
arXiv:2205.14135）把 Q、K、V 切成能放进片上 SRAM 的块，每块算完就与前面的结果合并，S 和 P
从不落到显存；合并靠“在线 softmax”（Milakov 与 Gimelshein，arXiv:1805.02867）：维护每行到目前
为止的最大值 m 和指数和 l，遇到更大的最大值时把已累积的结果按 exp(m_old − m_new) 缩放。
这里的循环顺序是 FlashAttention-2（Dao，arXiv:2307.08691）的：外层按 Q 块，内层扫 K/V 块。

结果与朴素实现数学上相等，只差浮点舍入（测试按 float64 比到 1e-12）；这段 PyTorch 代码在 CPU 上
并不会更快，它演示的是算法和访存量，真正的收益要靠把内层循环写成一个 GPU kernel（10.7 节）。
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


# --8<-- [start:naive]
def naive_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False) -> Tensor:
    """q, k, v: (B, H, N, D) → (B, H, N, D)。完整地算出 N×N 的 S 和 P。"""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, N)
    if causal:
        n = q.shape[-2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
    # --8<-- [end:naive]


@dataclass
class Traffic:
    """分块实现实际读写的元素个数（按它从“显存”搬进“片上”的张量块累计）。"""

    reads: int = 0
    writes: int = 0


# --8<-- [start:flash]
def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    block_q: int = 64,
    block_k: int = 64,
    traffic: Traffic | None = None,
) -> Tensor:
    """与 :func:`naive_attention` 相同的结果，但任何时刻只持有 (block_q, block_k) 大小的分数块。"""
    if block_q < 1 or block_k < 1:
        raise ValueError("block_q、block_k 须 ≥ 1")
    *batch, n, d = q.shape
    scale = 1 / math.sqrt(d)
    out = torch.empty_like(q)
    t = traffic or Traffic()
    for i in range(0, n, block_q):
        qi = q[..., i : i + block_q, :]  # (B, H, Br, D)：读一次 Q 块
        rows = qi.shape[-2]
        t.reads += qi.numel()
        m = torch.full((*batch, rows, 1), float("-inf"), dtype=q.dtype)  # 每行的最大值
        l = torch.zeros((*batch, rows, 1), dtype=q.dtype)  # 每行的指数和  # noqa: E741
        acc = torch.zeros((*batch, rows, d), dtype=q.dtype)  # 未归一化的输出
        stop = min(n, i + rows) if causal else n  # 因果：只看不晚于本块最后一行的键
        for j in range(0, stop, block_k):
            end = min(j + block_k, stop)
            kj, vj = k[..., j:end, :], v[..., j:end, :]  # 读 K、V 块
            t.reads += kj.numel() + vj.numel()
            s = qi @ kj.transpose(-2, -1) * scale  # (B, H, Br, Bc)：只在片上
            if causal:
                qpos = torch.arange(i, i + rows)[:, None]
                kpos = torch.arange(j, j + kj.shape[-2])[None, :]
                s = s.masked_fill(kpos > qpos, float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            p = torch.exp(s - m_new)  # 这一块的未归一化概率
            correction = torch.exp(m - m_new)  # 旧结果按新的最大值缩放
            l = l * correction + p.sum(dim=-1, keepdim=True)  # noqa: E741
            acc = acc * correction + p @ vj
            m = m_new
        out[..., i : i + rows, :] = acc / l  # 写一次 O 块
        t.writes += acc.numel()
    return out
    # --8<-- [end:flash]


# --8<-- [start:traffic]
def naive_traffic(n: int, d: int) -> Traffic:
    """朴素实现对“显存”的读写（元素个数），按 FlashAttention 论文第 3.2 节的算法 0 逐步数：
    读 Q、K 写 S；读 S 写 P；读 P、V 写 O。"""
    return Traffic(reads=2 * n * d + n * n + n * n + n * d, writes=n * n + n * n + n * d)


def flash_traffic(n: int, d: int, block_q: int, block_k: int, causal: bool = False) -> Traffic:
    """分块实现的读写：Q 与 O 各一遍；每个 Q 块把（因果时：它需要的那部分）K、V 读一遍。"""
    reads = 0
    for i in range(0, n, block_q):
        rows = min(block_q, n - i)
        keys = min(n, i + rows) if causal else n
        reads += rows * d + 2 * keys * d
    return Traffic(reads=reads, writes=n * d)
    # --8<-- [end:traffic]
