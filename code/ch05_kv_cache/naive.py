"""朴素生成（每步重算全部历史）与 KV Cache 生成，以及两者的 FLOPs 公式。

KV Cache 的思路最早随 Transformer 解码实现出现（如 Tensor2Tensor、fairseq 的增量解码），
本文件只用最朴素的做法：每层一个张量，新 token 的 K/V 用 ``torch.cat`` 接到末尾。
FLOPs 公式沿用第 3 章 ``ch03_gpu.roofline``：线性层 2·P·T，注意力 4·L·H·D·T·S。
"""

from __future__ import annotations

import torch
from ch03_gpu.roofline import attention_flops, best_time, matmul_params
from tinyllm.config import ModelConfig
from tinyllm.model import TinyLLM
from torch import Tensor

from .forward import attention, causal_mask, forward_tokens


# --8<-- [start:cache]
class ContiguousKVCache:
    """每层一对 (S, H_kv, D) 张量，解码一步就在末尾接上一行。"""

    def __init__(self, num_layers: int):
        self.k: list[Tensor | None] = [None] * num_layers
        self.v: list[Tensor | None] = [None] * num_layers

    def __len__(self) -> int:
        return 0 if self.k[0] is None else len(self.k[0])

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k[layer] is not None:
            k, v = torch.cat([self.k[layer], k]), torch.cat([self.v[layer], v])
        self.k[layer], self.v[layer] = k, v
        return k, v

    def truncate(self, length: int) -> None:
        """丢掉 length 之后的 K/V（计时时用来反复测同一个长度）。"""
        self.k = [k[:length] for k in self.k]
        self.v = [v[:length] for v in self.v]


def forward_cached(model: TinyLLM, cache: ContiguousKVCache, new_ids: list[int]) -> Tensor:
    """只算新 token：先把它们的 K/V 接进缓存，再让它们对全部历史做注意力。"""
    start = len(cache)
    positions = torch.arange(start, start + len(new_ids))

    def attend(layer, q, k, v):
        k_all, v_all = cache.append(layer, k, v)  # (start + T, H_kv, D)
        return attention(q, k_all, v_all, causal_mask(positions, len(k_all)))

    return forward_tokens(model, torch.tensor(new_ids), positions, attend)  # (T, vocab)
    # --8<-- [end:cache]


# --8<-- [start:generate]
@torch.inference_mode()
def forward_full(model: TinyLLM, ids: list[int]) -> Tensor:
    """不留缓存：整段序列从头算一遍。"""
    positions = torch.arange(len(ids))
    return forward_tokens(
        model,
        torch.tensor(ids),
        positions,
        lambda layer, q, k, v: attention(q, k, v, causal_mask(positions, len(ids))),
    )


@torch.inference_mode()
def generate_recompute(model: TinyLLM, prompt: list[int], max_new_tokens: int) -> list[int]:
    """朴素做法：生成第 n+1 个 token 时，把前 n 个 token 全部重新过一遍模型（贪心）。"""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        ids.append(int(forward_full(model, ids)[-1].argmax()))
    return ids[len(prompt) :]


@torch.inference_mode()
def generate_cached(model: TinyLLM, prompt: list[int], max_new_tokens: int) -> list[int]:
    """KV Cache：prefill 一次算完提示并缓存 K/V，之后每步只喂一个新 token（贪心）。"""
    cache = ContiguousKVCache(model.config.num_hidden_layers)
    logits, out = forward_cached(model, cache, prompt), []  # prefill
    for step in range(max_new_tokens):
        out.append(int(logits[-1].argmax()))
        if step < max_new_tokens - 1:
            logits = forward_cached(model, cache, out[-1:])  # decode：T = 1
    return out
    # --8<-- [end:generate]


# --8<-- [start:flops]
def forward_flops(cfg: ModelConfig, new_tokens: int, num_keys: int) -> float:
    """一次前向：new_tokens 个 token 过全部线性层，每个 token 对 num_keys 个 key 做注意力。"""
    return 2 * matmul_params(cfg) * new_tokens + attention_flops(cfg, new_tokens, num_keys)


def generation_flops(cfg: ModelConfig, prompt: int, new_tokens: int, cached: bool) -> float:
    """生成 new_tokens 个 token 的总 FLOPs（最后一个 token 不再前向）。"""
    if cached:  # prefill 一次 + 每步 1 个 token 对 n 个 key
        return forward_flops(cfg, prompt, prompt) + sum(
            forward_flops(cfg, 1, prompt + i + 1) for i in range(new_tokens - 1)
        )
    return sum(forward_flops(cfg, prompt + i, prompt + i) for i in range(new_tokens))
    # --8<-- [end:flops]


def count_flops(fn) -> int:
    """用 PyTorch 自带的 FlopCounterMode 数实际执行的矩阵乘 FLOPs。"""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.inference_mode()
def step_times(
    model: TinyLLM, lengths: list[int], repeats: int = 5
) -> list[tuple[int, float, float]]:
    """在每个上下文长度 n 上：朴素一步（重算 n 个 token）与缓存一步（1 个 token）的耗时，秒。"""
    return [time_one_length(model, n, repeats) for n in lengths]


def time_one_length(model: TinyLLM, n: int, repeats: int) -> tuple[int, float, float]:
    ids = [i % 200 + 32 for i in range(n)]  # 内容不影响耗时
    cache = ContiguousKVCache(model.config.num_hidden_layers)
    forward_cached(model, cache, ids[:-1])

    def decode_step():
        cache.truncate(n - 1)  # 每次都从 n-1 个历史 token 开始，只解码第 n 个
        forward_cached(model, cache, ids[-1:])

    return n, best_time(lambda: forward_full(model, ids), repeats), best_time(decode_step, repeats)
