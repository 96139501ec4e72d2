"""推理显存 = 权重 + KV Cache + 激活值 + 运行时开销。

模型结构直接用 :class:`tinyllm.ModelConfig`（字段名即 Hugging Face ``config.json`` 的字段名），
Llama-3-8B/70B 的数值见 ``data/models.yml``。单位一律是十进制 GB（10⁹ 字节）。
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from tinyllm import ModelConfig

# 每个元素的字节数。INT4 按 0.5 字节计，没算分组量化的 scale/zero（组大小 128 时约多 3%）。
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
GB = 1e9


@cache
def load_models() -> dict[str, tuple[str, ModelConfig, str]]:
    """``{key: (名字, 配置, 出处)}``。"""
    raw = yaml.safe_load((Path(__file__).parent / "data" / "models.yml").read_text("utf-8"))
    return {k: (v["name"], ModelConfig(**v["config"]), v["source"]) for k, v in raw.items()}


# --8<-- [start:weights]
def weight_bytes(cfg: ModelConfig, dtype: str = "bf16") -> float:
    """参数量 × 每参数字节数。"""
    return cfg.num_parameters() * DTYPE_BYTES[dtype]
    # --8<-- [end:weights]


# --8<-- [start:kv]
def kv_bytes_per_token(cfg: ModelConfig, dtype: str = "bf16") -> float:
    """每个 token 在每一层存一份 K 和一份 V，每份 num_key_value_heads × head_dim 个数。"""
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * DTYPE_BYTES[dtype]


def kv_cache_bytes(cfg: ModelConfig, tokens: int, batch: int = 1, dtype: str = "bf16") -> float:
    return kv_bytes_per_token(cfg, dtype) * tokens * batch
    # --8<-- [end:kv]


# --8<-- [start:activations]
def activation_bytes(cfg: ModelConfig, chunk_tokens: int, num_seqs: int, dtype: str = "bf16"):
    """一次前向里同时存活的激活值峰值（推理不存反向要用的中间结果，逐层复用同一块内存）。

    一层内最大的是：残差流与归一化输出 (2·h)、Q/K/V (H + 2·H_kv)·d、SwiGLU 的 gate/up/乘积 (3·I)，
    按本次前向处理的 token 数 ``chunk_tokens`` 计；
    注意力按 FlashAttention 计，不物化 T×T 的分数矩阵。
    最后 lm_head 只为每条序列的最后一个 token 算 fp32 logits：num_seqs × vocab × 4 字节。
    """
    per_token = (
        2 * cfg.hidden_size
        + (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim
        + 3 * cfg.intermediate_size
    )
    return chunk_tokens * per_token * DTYPE_BYTES[dtype] + num_seqs * cfg.vocab_size * 4
    # --8<-- [end:activations]


@dataclass(frozen=True)
class Budget:
    weights: float
    kv_cache: float
    activations: float
    overhead: float

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead


# --8<-- [start:budget]
def estimate(
    cfg: ModelConfig,
    context: int,
    batch: int,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    chunk_tokens: int = 2048,
    overhead_gb: float = 1.0,
    tp: int = 1,
) -> Budget:
    """每张卡的显存预算。张量并行（tp）把权重、KV 头和激活按 tp 切开，开销每卡一份。"""
    if min(context, batch, chunk_tokens, tp) <= 0:
        raise ValueError("context、batch、chunk_tokens、tp 都必须是正整数")
    if cfg.num_key_value_heads % tp and tp % cfg.num_key_value_heads:
        raise ValueError(f"tp={tp} 与 KV 头数 {cfg.num_key_value_heads} 不能整除对齐")
    # 权重量化（W8A16、W4A16）不改变激活的精度：激活按 16 位计
    act = dtype if dtype in ("fp32", "bf16", "fp16") else "bf16"
    # tp 超过 KV 头数时每卡仍至少存 1 个完整的 KV 头（头被复制而不是切开）
    kv_share = max(1.0 / tp, 1.0 / cfg.num_key_value_heads)
    return Budget(
        weights=weight_bytes(cfg, dtype) / tp,
        kv_cache=kv_cache_bytes(cfg, context, batch, kv_dtype or dtype) * kv_share,
        activations=activation_bytes(cfg, min(chunk_tokens, context * batch), batch, act) / tp,
        overhead=overhead_gb * GB,
    )


def max_kv_tokens(cfg: ModelConfig, gpu_mem_gb: float, utilization: float = 0.92, **kw) -> int:
    """在 ``gpu_mem_gb × utilization`` 里放下权重、激活、开销之后，KV Cache 还能装多少 token。"""
    chunk = kw.get("chunk_tokens", 2048)
    b = estimate(cfg, context=chunk, batch=1, **kw)  # 激活按一整个 prefill 块计
    per_token = b.kv_cache / chunk  # 已含张量并行的切分
    free = gpu_mem_gb * GB * utilization - (b.weights + b.activations + b.overhead)
    return max(0, int(free // per_token))
    # --8<-- [end:budget]
