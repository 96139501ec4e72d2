"""执行器：真的跑本书的模型（分页 KV Cache，第 5 章），或者什么都不算、只按 Roofline 估时间。

调度器只决定“算哪些 token”，执行器负责“算出来”；两者分开，同一个调度器既能在 CPU 上跑小模型
证明结果正确，也能拿 Llama-3-8B 在 H100 上的 Roofline 耗时做建模比较（标明是建模）。
"""

from __future__ import annotations

import torch
from ch03_gpu.roofline import (
    OPS_PER_LAYER,
    Hardware,
    Workload,
    attention_flops,
    classify,
    matmul_params,
)
from ch03_gpu.vram import DTYPE_BYTES, kv_bytes_per_token
from ch05_kv_cache.paged import Chunk, PagedKVCache, forward_paged
from tinyllm.config import ModelConfig
from tinyllm.model import TinyLLM

from .scheduler import Batch, Sequence


def reaches_end(seq: Sequence, n: int) -> bool:
    """本步算完后，这个序列的已知 token 全都有了 KV：最后一个 token 的 logits 用来采样。"""
    return seq.num_computed + n == len(seq.tokens)


# --8<-- [start:model-executor]
class ModelExecutor:
    """把一个 Batch 变成一次拼接前向：每个序列一段 Chunk，注意力按各自的块表读历史。"""

    def __init__(self, model: TinyLLM, scheduler):
        self.model, self.manager = model, scheduler.manager
        self.cache = PagedKVCache(model, self.manager.num_blocks, self.manager.block_size)

    @torch.inference_mode()
    def execute(self, batch: Batch) -> dict[Sequence, int]:
        chunks = [
            Chunk(id(seq), seq.tokens[seq.num_computed : seq.num_computed + n], seq.num_computed)
            for seq, n in batch.items
        ]
        logits = forward_paged(self.model, self.cache, self.manager, chunks)  # (N, vocab)
        out, end = {}, 0
        for seq, n in batch.items:
            end += n
            if reaches_end(seq, n):  # prefill 的中间块不采样
                out[seq] = self.pick(seq, logits[end - 1])
        return out

    def pick(self, seq: Sequence, logits: torch.Tensor) -> int:
        """从一行 logits 选出下一个 token：这里是贪心；第 9 章的服务按请求的温度采样。"""
        return int(logits.argmax())
        # --8<-- [end:model-executor]


class NullExecutor:
    """不跑模型，每次“生成” token 0：只用来配合建模的耗时比较调度策略。"""

    def __init__(self, *_):
        pass

    def execute(self, batch: Batch) -> dict[Sequence, int]:
        return {seq: 0 for seq, n in batch.items if reaches_end(seq, n)}


# --8<-- [start:roofline-cost]
class RooflineCost:
    """一步的建模耗时 = max(算力时间, 访存时间) + 算子开销（第 3 章的 Roofline 模型）。"""

    def __init__(self, cfg: ModelConfig, hw: Hardware, dtype: str = "bf16"):
        self.cfg, self.hw, self.dtype = cfg, hw, dtype

    def __call__(self, batch: Batch) -> float:
        pairs = sum(
            n * seq.num_computed + n * (n + 1) // 2 for seq, n in batch.items
        )  # (query, key) 对数
        kv_read = sum(seq.num_computed + n for seq, n in batch.items)  # 每个序列读一遍自己的 KV
        flops = (
            2 * matmul_params(self.cfg) * batch.num_tokens + attention_flops(self.cfg, 1, 1) * pairs
        )
        weights = matmul_params(self.cfg) * DTYPE_BYTES[self.dtype]
        kv = kv_bytes_per_token(self.cfg, self.dtype) * kv_read
        ops = OPS_PER_LAYER * self.cfg.num_hidden_layers + 2  # 与第 3 章的 prefill/decode 一致
        v = classify(Workload("step", flops, weights + kv, ops), self.hw)
        return max(v.compute_s, v.memory_s) + v.overhead_s
        # --8<-- [end:roofline-cost]
