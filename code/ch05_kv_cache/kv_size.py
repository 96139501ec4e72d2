"""每个 token 的 KV Cache 有多大：MHA、MQA、GQA 与 MLA。

MQA：Shazeer, "Fast Transformer Decoding: One Write-Head is All You Need", arXiv 1911.02150。
GQA：Ainslie et al., arXiv 2305.13245。MLA：DeepSeek-AI, DeepSeek-V2, arXiv 2405.04434。
MLA 缓存的是压缩后的潜向量 c_KV（kv_lora_rank 维）和共享的 RoPE 键（qk_rope_head_dim 维），
K 和 V 都从同一个潜向量还原，所以没有“×2”。vLLM 0.33.0 的 MLA 层也这样存：
vllm/model_executor/layers/attention/mla_attention.py 里
``head_size = kv_lora_rank + qk_rope_head_dim``，KV Cache 规格按 1 个 KV 头登记。
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from ch03_gpu.vram import DTYPE_BYTES


# --8<-- [start:layout]
@dataclass(frozen=True)
class KVLayout:
    name: str
    kind: str  # mha / gqa / mqa / mla
    source: str
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int = 0  # MLA 不用
    head_dim: int = 0
    kv_lora_rank: int = 0  # 以下只有 MLA 用
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0

    def __post_init__(self):
        if self.kind not in ("mha", "gqa", "mqa", "mla"):
            raise ValueError(f"未知的注意力结构 {self.kind!r}")
        if self.kind == "mla" and not (self.kv_lora_rank and self.qk_rope_head_dim):
            raise ValueError("MLA 需要 kv_lora_rank 和 qk_rope_head_dim")
        if self.kind != "mla" and not (self.num_key_value_heads and self.head_dim):
            raise ValueError("需要 num_key_value_heads 和 head_dim")

    def elements_per_token(self) -> int:
        """每个 token 在全部层里缓存多少个数。"""
        if self.kind == "mla":  # 潜向量 + 共享 RoPE 键，K/V 共用
            return self.num_hidden_layers * (self.kv_lora_rank + self.qk_rope_head_dim)
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim

    def mha_elements_per_token(self) -> int:
        """同样的层数和头数若用标准 MHA，每个 token 要缓存多少个数（对比用）。"""
        if self.kind == "mla":
            k_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
            return self.num_hidden_layers * self.num_attention_heads * (k_dim + self.v_head_dim)
        return 2 * self.num_hidden_layers * self.num_attention_heads * self.head_dim

    def bytes_per_token(self, dtype: str = "bf16") -> float:
        return self.elements_per_token() * DTYPE_BYTES[dtype]
        # --8<-- [end:layout]


@cache
def load_layouts() -> dict[str, KVLayout]:
    raw = yaml.safe_load((Path(__file__).parent / "data" / "kv_models.yml").read_text("utf-8"))
    return {key: KVLayout(**fields) for key, fields in raw.items()}


def human_bytes(n: float) -> str:
    """二进制单位：KiB/MiB/GiB。"""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def table(keys: list[str], tokens: int, dtype: str) -> list[list[str]]:
    rows = []
    for key in keys:
        m = load_layouts()[key]
        per_token = m.bytes_per_token(dtype)
        rows.append(
            [
                m.name,
                m.kind.upper(),
                f"{per_token:,.0f} B",
                human_bytes(per_token * tokens),
                f"{m.elements_per_token() / m.mha_elements_per_token():.1%}",
            ]
        )
    return rows
