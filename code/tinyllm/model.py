"""Llama/Qwen 式解码器：RMSNorm、RoPE、分组查询注意力（GQA）、SwiGLU。

结构与 Hugging Face ``LlamaForCausalLM`` 完全相同，连参数名都一样
（``model.layers.0.self_attn.q_proj`` ……），所以同结构的 HF 权重可以原样 ``load_state_dict``。
KV Cache 的写法借鉴 gpt-fast：``setup_cache`` 预分配每层的 K/V 缓冲区，前向时按 ``input_pos`` 写入。

参考：Llama（Touvron et al., arXiv 2302.13971）；RoPE（Su et al., arXiv 2104.09864）；
GQA（Ainslie et al., arXiv 2305.13245）；SwiGLU（Shazeer, arXiv 2002.05202）。
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


# --8<-- [start:rmsnorm]
class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) * weight：比 LayerNorm 少了减均值和 bias。"""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()  # 在 fp32 里算方差，低精度下也稳定
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    # --8<-- [end:rmsnorm]


# --8<-- [start:rope]
def rope_cos_sin(head_dim: int, max_pos: int, theta: float) -> tuple[Tensor, Tensor]:
    """每个位置、每对维度的旋转角 pos * theta^(-2i/d)，返回 cos/sin，形状 (max_pos, head_dim)。"""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv_freq)  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D)：前后两半共用角度
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """把第 i 维与第 i + D/2 维看成一对复数做旋转（HF 的 rotate_half 约定）。"""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin  # x: (B, H, T, D)，cos/sin: (T, D) 广播
    # --8<-- [end:rope]


class KVCache(nn.Module):
    """一层的 K/V 缓冲区，形状 (B, H_kv, max_seq, D)。不存进 state_dict。"""

    def __init__(self, batch: int, n_kv_heads: int, max_seq: int, head_dim: int, dtype):
        super().__init__()
        shape = (batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype), persistent=False)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k[:, :, input_pos] = k  # k: (B, H_kv, T_new, D)
        self.v[:, :, input_pos] = v
        return self.k, self.v


# --8<-- [start:attention]
class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.d = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.d, cfg.hidden_size, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, input_pos: Tensor):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.d).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv, self.d).transpose(1, 2)  # (B, H_kv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv, self.d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_cache is not None:  # 解码：把新 K/V 写进缓存，再对全部历史做注意力
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, H_kv, S, D)
        # GQA：每个 KV 头复制给 group 个 Query 头（MHA 时 group = 1）
        group = self.n_heads // self.n_kv
        k = k.repeat_interleave(group, dim=1)  # (B, H, S, D)
        v = v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-2, -1) / self.d**0.5  # (B, H, T, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        out = F.softmax(scores.float(), dim=-1).to(q.dtype) @ v  # (B, H, T, D)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.d))

    # --8<-- [end:attention]


# --8<-- [start:mlp]
class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))：门控前馈网络，三个矩阵。"""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    # --8<-- [end:mlp]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, mask, input_pos):
        x = x + self.self_attn(
            self.input_layernorm(x), cos, sin, mask, input_pos
        )  # 预归一化 + 残差
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


# --8<-- [start:model]
class TinyLLM(nn.Module):
    """``logits = model(input_ids)``；先 ``setup_cache`` 再传 ``input_pos`` 即走 KV Cache。"""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rope_cos_sin(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.cache_len = 0  # 0 表示没有 KV Cache：每次前向都从头算

    def setup_cache(self, batch: int, max_seq: int | None = None) -> None:
        max_seq = max_seq or self.config.max_position_embeddings
        dtype = self.lm_head.weight.dtype
        for layer in self.model.layers:
            kv = KVCache(
                batch, self.config.num_key_value_heads, max_seq, self.config.head_dim, dtype
            )
            layer.self_attn.kv_cache = kv.to(self.lm_head.weight.device)
        self.cache_len = max_seq

    def clear_cache(self) -> None:
        for layer in self.model.layers:
            layer.self_attn.kv_cache = None
        self.cache_len = 0

    def forward(self, input_ids: Tensor, input_pos: Tensor | None = None) -> Tensor:
        B, T = input_ids.shape  # input_ids: (B, T)
        if input_pos is None:
            input_pos = torch.arange(T, device=input_ids.device)
        if int(input_pos[-1]) >= self.config.max_position_embeddings:
            raise ValueError(f"位置 {int(input_pos[-1])} 超出 max_position_embeddings")
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]  # (T, D)
        # 因果掩码：位置 p 的 query 只能看见位置 ≤ p 的 key
        key_pos = torch.arange(self.cache_len or T, device=input_ids.device)
        src_pos = key_pos if self.cache_len else input_pos
        mask = src_pos[None, :] <= input_pos[:, None]  # (T, S)
        x = self.model.embed_tokens(input_ids)  # (B, T, hidden)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, input_pos)
        return self.lm_head(self.model.norm(x))  # (B, T, vocab)

    # --8<-- [end:model]
