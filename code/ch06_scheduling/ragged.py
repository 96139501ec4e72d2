"""拼接批次（ragged batching）：不要 batch 维度，把所有提示首尾相接，用块对角的因果掩码隔开。

对照组是静态批处理的左侧 padding：短提示补 <pad> 到最长的长度，补出来的位置照样参与矩阵乘。
"""

from __future__ import annotations

import torch
from ch05_kv_cache.forward import attention, forward_tokens
from tinyllm.model import TinyLLM
from torch import Tensor


# --8<-- [start:mask]
def block_diagonal_causal_mask(lengths: list[int]) -> Tensor:
    """(N, N)：token i 能看见 token j，当且仅当两者属于同一个提示且 j 不在 i 之后。"""
    seq = torch.repeat_interleave(
        torch.arange(len(lengths)), torch.tensor(lengths)
    )  # 每个 token 属于哪个提示
    idx = torch.arange(len(seq))
    return (seq[:, None] == seq[None, :]) & (idx[None, :] <= idx[:, None])


@torch.inference_mode()
def ragged_forward(model: TinyLLM, prompts: list[list[int]]) -> list[Tensor]:
    """一次前向算完所有提示，返回每个提示自己的 logits (T_i, vocab)。"""
    lengths = [len(p) for p in prompts]
    token_ids = torch.tensor([t for p in prompts for t in p])  # (N,)
    positions = torch.cat([torch.arange(n) for n in lengths])  # 每个提示的位置从 0 数起
    mask = block_diagonal_causal_mask(lengths)
    logits = forward_tokens(
        model, token_ids, positions, lambda layer, q, k, v: attention(q, k, v, mask)
    )
    return list(logits.split(lengths))
    # --8<-- [end:mask]


# --8<-- [start:padding]
def padding_tokens(lengths: list[int]) -> int:
    """静态批处理把每行补到最长：补进去的 <pad> 个数。"""
    return sum(max(lengths) - n for n in lengths)


def mixed_step_padding(batch: int, new_prompt_len: int) -> int:
    """B-1 个请求在 decode（每个只加 1 个 token），新来一个 n 个 token 的提示要 prefill：
    补齐到 n 需要 (n-1)(B-1) 个 padding。"""
    return (new_prompt_len - 1) * (batch - 1)
    # --8<-- [end:padding]
