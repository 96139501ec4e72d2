"""PagedAttention：把每个序列的 KV Cache 切成固定大小的块，用块表记录它们在显存池里的位置。

来源：Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP 2023, arXiv 2309.06180。这里的名字跟 vLLM 一致：``block_table``
（逻辑块 → 物理块）、``slot_mapping``（每个 token 写进池子的哪个槽）、引用计数与写时复制。
真实内核在块内直接读，不会把 K/V 拼成连续张量；这里用 gather 表达同样的寻址，便于验证。
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tinyllm.model import TinyLLM
from torch import Tensor

from .forward import attention, causal_mask, forward_tokens


class NoFreeBlocks(RuntimeError):
    """池子里的空闲块不够了：调度器应当抢占某个请求或让新请求继续排队。"""


# --8<-- [start:manager]
class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks 和 block_size 都必须是正整数")
        self.num_blocks, self.block_size = num_blocks, block_size
        # 空闲块队列：按放回的先后排队，从队头取（dict 保持插入顺序，也能 O(1) 从中间删除）
        self.free_blocks: dict[int, None] = dict.fromkeys(range(num_blocks))
        self.ref_count = [0] * num_blocks
        self.block_tables: dict[int, list[int]] = {}  # seq_id → 物理块号列表
        self.num_tokens: dict[int, int] = {}  # seq_id → 已占用的槽数

    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    def blocks_needed(self, seq_id: int, num_new_tokens: int) -> int:
        have = len(self.block_tables.get(seq_id, []))
        total = self.num_tokens.get(seq_id, 0) + num_new_tokens
        return max(0, -(-total // self.block_size) - have) + self._needs_copy(
            seq_id, num_new_tokens
        )

    def _needs_copy(self, seq_id: int, num_new_tokens: int) -> int:
        """最后一块被别的序列共享、而且还没写满：往里写之前得先复制一份（写时复制）。"""
        table, n = self.block_tables.get(seq_id), self.num_tokens.get(seq_id, 0)
        return int(
            bool(table)
            and num_new_tokens > 0
            and n % self.block_size != 0
            and self.ref_count[table[-1]] > 1
        )

    def allocate_slots(self, seq_id: int, num_new_tokens: int) -> list[tuple[int, int]]:
        """为 seq_id 再留 num_new_tokens 个槽。返回需要执行的块复制 [(源块, 目标块)]。"""
        if self.blocks_needed(seq_id, num_new_tokens) > len(self.free_blocks):
            raise NoFreeBlocks(
                f"需要 {self.blocks_needed(seq_id, num_new_tokens)} "
                f"块，只剩 {len(self.free_blocks)} 块"
            )
        table = self.block_tables.setdefault(seq_id, [])
        copies = []
        if self._needs_copy(seq_id, num_new_tokens):
            new = self._take()
            copies.append((table[-1], new))
            self._release(table[-1])
            table[-1] = new
        self.num_tokens[seq_id] = self.num_tokens.get(seq_id, 0) + num_new_tokens
        while len(table) * self.block_size < self.num_tokens[seq_id]:
            table.append(self._take())
        return copies

    def fork(self, parent: int, child: int) -> None:
        """child 共享 parent 的全部块（例如并行采样的多个分支），只加引用计数。"""
        if child in self.block_tables:
            raise ValueError(f"序列 {child} 已经有块表，不能再 fork 到它")
        self.block_tables[child] = list(self.block_tables[parent])
        self.num_tokens[child] = self.num_tokens[parent]
        for block in self.block_tables[child]:
            self.ref_count[block] += 1

    def free(self, seq_id: int) -> None:
        for block in reversed(self.block_tables.pop(seq_id, [])):
            self._release(block)
        self.num_tokens.pop(seq_id, None)

    def slot_mapping(self, seq_id: int, start: int, end: int) -> list[int]:
        """位置 start..end-1 的 token 在池子里的槽号 = 物理块号 × block_size + 块内偏移。"""
        table, bs = self.block_tables[seq_id], self.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, end)]

    def _take(self) -> int:
        block = next(iter(self.free_blocks))
        del self.free_blocks[block]
        self.ref_count[block] = 1
        return block

    def _release(self, block: int) -> None:
        self.ref_count[block] -= 1
        if self.ref_count[block] == 0:
            self.free_blocks[block] = None
            # --8<-- [end:manager]


# --8<-- [start:pool]
class PagedKVCache:
    """整块显存池：每层一个 (num_blocks, block_size, H_kv, D) 的 K 和 V。"""

    def __init__(self, model: TinyLLM, num_blocks: int, block_size: int):
        cfg = model.config
        shape = (
            cfg.num_hidden_layers,
            num_blocks * block_size,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.k = torch.zeros(shape, dtype=model.lm_head.weight.dtype)  # 槽维度已展平
        self.v = torch.zeros_like(self.k)
        self.block_size = block_size

    def copy_block(self, src: int, dst: int) -> None:
        bs = self.block_size
        self.k[:, dst * bs : (dst + 1) * bs] = self.k[:, src * bs : (src + 1) * bs]
        self.v[:, dst * bs : (dst + 1) * bs] = self.v[:, src * bs : (src + 1) * bs]


@dataclass(frozen=True)
class Chunk:
    """本步要为某个序列计算的一段 token：位置 start .. start+len(token_ids)-1。"""

    seq_id: int
    token_ids: list[int]
    start: int


def forward_paged(
    model: TinyLLM, cache: PagedKVCache, manager: BlockManager, chunks: list[Chunk]
) -> Tensor:
    """一次前向算完多个序列的若干 token（槽位须已由 manager 分配）。返回 (N, vocab)。"""
    positions = torch.tensor([c.start + i for c in chunks for i in range(len(c.token_ids))])
    slots = torch.tensor(
        [
            s
            for c in chunks
            for s in manager.slot_mapping(c.seq_id, c.start, c.start + len(c.token_ids))
        ]
    )
    token_ids = torch.tensor([t for c in chunks for t in c.token_ids])

    def attend(layer, q, k, v):
        cache.k[layer, slots], cache.v[layer, slots] = k, v  # 新 K/V 写进各自的槽
        out, offset = torch.empty_like(q), 0
        for c in chunks:  # 每个序列只看自己的块：按块表把历史 K/V 读出来
            n, end = len(c.token_ids), c.start + len(c.token_ids)
            history = torch.tensor(manager.slot_mapping(c.seq_id, 0, end))
            pos = positions[offset : offset + n]
            out[offset : offset + n] = attention(
                q[offset : offset + n],
                cache.k[layer, history],
                cache.v[layer, history],
                causal_mask(pos, end),
            )
            offset += n
        return out

    return forward_tokens(model, token_ids, positions, attend)
    # --8<-- [end:pool]
