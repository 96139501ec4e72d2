"""把一批 token 展平成一维来跑本书的模型，注意力这一步交给调用方。

vLLM 的模型前向就是这种形状：输入是所有请求拼起来的 ``(N,)`` 个 token 和各自的位置，
只有注意力需要知道“哪个 token 属于哪个请求、能看见哪些历史”。其余算子（投影、RMSNorm、
SwiGLU）对每个 token 独立计算，与 batch 怎么排无关。所以这里把注意力做成回调：
第 5 章用它接连续缓存和分页缓存，第 6 章用它接块对角掩码的拼接批次。
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from tinyllm.model import TinyLLM, apply_rope
from torch import Tensor

# attend(layer, q, k, v) -> out：q (N, H, D)，k/v (N, H_kv, D) 是本步新 token 的，返回 (N, H, D)
AttendFn = Callable[[int, Tensor, Tensor, Tensor], Tensor]


# --8<-- [start:attention]
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """q: (T, H, D)，k/v: (S, H_kv, D)，mask: (T, S) 布尔，True 表示可见。返回 (T, H, D)。"""
    group = q.shape[1] // k.shape[1]  # GQA：每个 KV 头服务 group 个 Query 头
    k = k.repeat_interleave(group, dim=1).transpose(0, 1)  # (H, S, D)
    v = v.repeat_interleave(group, dim=1).transpose(0, 1)
    scores = q.transpose(0, 1) @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (H, T, S)
    scores = scores.masked_fill(~mask, float("-inf"))
    out = F.softmax(scores.float(), dim=-1).to(q.dtype) @ v  # (H, T, D)
    return out.transpose(0, 1)  # (T, H, D)


def causal_mask(query_pos: Tensor, num_keys: int) -> Tensor:
    """位置为 query_pos 的 query 能看见位置 0..query_pos 的 key。返回 (T, S)。"""
    return torch.arange(num_keys)[None, :] <= query_pos[:, None]
    # --8<-- [end:attention]


# --8<-- [start:forward]
def forward_tokens(
    model: TinyLLM, token_ids: Tensor, positions: Tensor, attend: AttendFn
) -> Tensor:
    """token_ids/positions: (N,)。返回每个 token 的 logits (N, vocab)。"""
    cfg = model.config
    N, H, H_kv, D = len(token_ids), cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    if int(positions.max()) >= cfg.max_position_embeddings:
        raise ValueError(f"位置 {int(positions.max())} 超出 max_position_embeddings")
    cos, sin = model.rope_cos[positions][:, None], model.rope_sin[positions][:, None]  # (N, 1, D)
    x = model.model.embed_tokens(token_ids)  # (N, hidden)
    for i, layer in enumerate(model.model.layers):
        a, h = layer.self_attn, layer.input_layernorm(x)
        q = apply_rope(a.q_proj(h).view(N, H, D), cos, sin)  # (N, H, D)
        k = apply_rope(a.k_proj(h).view(N, H_kv, D), cos, sin)  # (N, H_kv, D)
        v = a.v_proj(h).view(N, H_kv, D)
        x = x + a.o_proj(attend(i, q, k, v).reshape(N, H * D))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(model.model.norm(x))  # (N, vocab)
    # --8<-- [end:forward]
