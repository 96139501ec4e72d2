"""生成循环：prefill 一次处理整段提示，decode 每步只喂一个新 token（走 KV Cache）。"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .model import TinyLLM


# --8<-- [start:sample]
def sample(logits: Tensor, temperature: float, top_k: int | None, gen: torch.Generator | None):
    """logits: (B, vocab) → (B,)。temperature = 0 即贪心（argmax）。"""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    # --8<-- [end:sample]


# --8<-- [start:generate]
@torch.inference_mode()
def stream(
    model: TinyLLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_id: int | None = None,
) -> Iterator[int]:
    """逐个产出新 token id；遇到 ``stop_id`` 或达到长度上限即停。"""
    if not prompt_ids:
        raise ValueError("提示不能为空（至少要有 <bos>）")
    if temperature < 0:
        raise ValueError("temperature 不能为负")
    total = len(prompt_ids) + max_new_tokens
    if total > model.config.max_position_embeddings:
        raise ValueError(
            f"提示 + 生成共 {total} 个 token，超过上限 {model.config.max_position_embeddings}"
        )
    gen = torch.Generator().manual_seed(seed)
    model.setup_cache(batch=1, max_seq=total)
    try:
        ids = torch.tensor([prompt_ids])  # (1, T)
        logits = model(ids, torch.arange(len(prompt_ids)))  # prefill：整段提示一次前向
        for step in range(max_new_tokens):
            next_id = sample(logits[:, -1], temperature, top_k, gen)  # (1,)
            yield int(next_id)
            if int(next_id) == stop_id or step == max_new_tokens - 1:
                break
            pos = torch.tensor([len(prompt_ids) + step])
            logits = model(next_id[:, None], pos)  # decode：每步只算一个 token
    finally:
        model.clear_cache()


def generate(model: TinyLLM, prompt_ids: list[int], max_new_tokens: int, **kw) -> list[int]:
    return list(stream(model, prompt_ids, max_new_tokens, **kw))
    # --8<-- [end:generate]


@torch.inference_mode()
def generate_no_cache(model: TinyLLM, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """朴素参照：每步把全部历史重新算一遍（贪心）。与 :func:`generate` 的结果必须一致。"""
    ids = list(prompt_ids)
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt_ids) :]
