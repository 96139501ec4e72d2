"""前缀缓存：对“满块”的 token id 做链式哈希，哈希相同就直接复用那一块的 KV。

做法跟随 vLLM 0.33.0 的 V1 KV Cache 管理器（vllm/v1/core/kv_cache_utils.py 的
``hash_block_tokens`` 与 vllm/v1/core/block_pool.py）：
- 只给写满的块算哈希；块哈希 = H(父块哈希, 本块 token id, 额外键)，所以相同的块哈希意味着
  从开头到这一块的全部 token 都相同，而不只是这一块相同；
- 引用计数归零的块不立刻清空，而是连同哈希一起进入空闲队列，真正被重新分配时才“淘汰”，
  队头先出，形成 LRU；释放一个序列时从尾块开始放回，让最不可能被复用的尾部先被淘汰；
- 提示的最后一个 token 永远要重算，因为要用它的 logits 采样下一个 token。
vLLM 0.33.0 默认 ``--prefix-caching-hash-algo sha256``：对 (父哈希, token 元组, 额外键) 做 pickle
序列化后 SHA-256，链的起点 NONE_HASH 由固定种子 "vllm-none-hash"（或 PYTHONHASHSEED）算出；
额外键包括 LoRA、多模态输入和 cache_salt。这里用 struct 打包，思路相同，字节不同。
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .paged import BlockManager, NoFreeBlocks

ROOT_HASH = hashlib.sha256(b"tinyllm-prefix-cache").digest()  # 链的起点（vLLM 称 NONE_HASH）


# --8<-- [start:hash]
def block_hashes(token_ids: list[int], block_size: int, extra_key: bytes = b"") -> list[bytes]:
    """每个满块一个哈希，链式：第 i 块的哈希把前 i-1 块的内容都“包”了进去。"""
    hashes, parent = [], ROOT_HASH
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = token_ids[start : start + block_size]
        parent = hashlib.sha256(
            parent + struct.pack(f"<{block_size}i", *block) + extra_key
        ).digest()
        hashes.append(parent)
    return hashes
    # --8<-- [end:hash]


@dataclass
class CacheStats:
    queried_tokens: int = 0  # 提交给缓存查询的提示 token 数
    hit_tokens: int = 0  # 命中、不必重算的 token 数
    evictions: int = 0  # 带着哈希被重新分配掉的块数

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else 0.0


# --8<-- [start:manager]
class PrefixCachingBlockManager(BlockManager):
    def __init__(self, num_blocks: int, block_size: int, extra_key: bytes = b""):
        super().__init__(num_blocks, block_size)
        self.extra_key = extra_key  # 例如 LoRA 名字、cache_salt：不同的键不共享缓存
        self.cached: dict[bytes, int] = {}  # 块哈希 → 物理块
        self.block_hash: dict[int, bytes] = {}  # 物理块 → 块哈希
        self.stats = CacheStats()

    def find_cached_blocks(self, token_ids: list[int]) -> list[int]:
        """最长命中前缀（整块为单位），至少留最后一个 token 给模型重算。"""
        hits = []
        for h in block_hashes(token_ids[:-1], self.block_size, self.extra_key):
            if h not in self.cached:
                break  # 链式哈希：一块没命中，后面的不可能命中
            hits.append(self.cached[h])
        return hits

    def allocate_prompt(self, seq_id: int, token_ids: list[int]) -> int:
        """为新请求分配块并复用命中的前缀，返回命中的 token 数（这些不用再 prefill）。"""
        if seq_id in self.block_tables:
            raise ValueError(f"序列 {seq_id} 已经分配过，先 free 再重新分配")
        hits = self.find_cached_blocks(token_ids)
        idle_hits = sum(self.ref_count[b] == 0 for b in hits)  # 命中了但正躺在空闲队列里的块
        new_blocks = -(-len(token_ids) // self.block_size) - len(hits)
        if new_blocks > self.num_free_blocks() - idle_hits:
            raise NoFreeBlocks(
                f"需要 {new_blocks} 块，可用 {self.num_free_blocks() - idle_hits} 块"
            )
        for block in hits:  # 命中：引用计数 +1，若在空闲队列里就取出来（不再可被淘汰）
            self.free_blocks.pop(block, None)
            self.ref_count[block] += 1
        self.block_tables[seq_id] = list(hits)
        self.num_tokens[seq_id] = len(hits) * self.block_size
        self.allocate_slots(seq_id, len(token_ids) - self.num_tokens[seq_id])
        self.stats.queried_tokens += len(token_ids)
        self.stats.hit_tokens += len(hits) * self.block_size
        return len(hits) * self.block_size

    def cache_full_blocks(self, seq_id: int, token_ids: list[int]) -> None:
        """KV 已经算好并写入后调用：把新写满的块登记到哈希表。"""
        table = self.block_tables[seq_id]
        for block, h in zip(
            table, block_hashes(token_ids, self.block_size, self.extra_key), strict=False
        ):
            if block not in self.block_hash and h not in self.cached:
                self.cached[h], self.block_hash[block] = block, h

    def _take(self) -> int:
        block = super()._take()
        h = self.block_hash.pop(block, None)
        if h is not None:  # 队头的块带着旧内容的哈希：现在才真正淘汰
            del self.cached[h]
            self.stats.evictions += 1
        return block
        # --8<-- [end:manager]
