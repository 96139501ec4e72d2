"""KV Cache 量化：写入缓存时量化，注意力读出时反量化。

- ``int8``：每个 token、每个 KV 头一个 scale（amax/127），动态计算——vLLM 0.33.0 的
  ``--kv-cache-dtype int8_per_token_head`` 就是这个粒度（只在 Triton 注意力后端可用）；
- ``int4``：同样的粒度换成 [-7, 7]，用来看位数再减半的代价；
- ``fp8_e4m3`` / ``fp8_e5m2``：直接转成 FP8，scale 固定为 1.0——vLLM 在检查点没有提供
  k_scale / v_scale 时就是这么做的（7.5 节说明它何时打印警告、何时只有一行提示）。

在第 5 章的逐 token 前向（``ch05_kv_cache.forward``）上实现，只换掉“存 K/V”的那一步。
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from ch05_kv_cache.forward import attention, causal_mask, forward_tokens
from tinyllm.model import TinyLLM
from torch import Tensor

from .formats import FP8_DTYPES

KV_MODES = ("none", "int8", "int4", "fp8_e4m3", "fp8_e5m2")


# --8<-- [start:kv-quant]
def quantize_per_token_head(x: Tensor, qmax: int) -> tuple[Tensor, Tensor]:
    """x: (T, H_kv, D) → 整数 (T, H_kv, D) 与 scale (T, H_kv, 1)：每 token 每头一个 scale。"""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / qmax
    return torch.clamp(torch.round(x / scale), -qmax, qmax).to(torch.int8), scale


class QuantKVCache:
    """每层存量化后的 K/V；append 返回反量化后的全部历史，交给注意力。"""

    def __init__(self, num_layers: int, mode: str = "int8"):
        if mode not in KV_MODES:
            raise ValueError(f"mode 必须是 {KV_MODES} 之一，收到 {mode!r}")
        self.mode = mode
        self.store: list[list[tuple]] = [[] for _ in range(num_layers)]  # 每层一串 (K, V) 块

    def _encode(self, x: Tensor):
        if self.mode in ("int8", "int4"):
            return quantize_per_token_head(x, 127 if self.mode == "int8" else 7)
        if self.mode.startswith("fp8"):
            return x.to(FP8_DTYPES[self.mode[4:]]), None  # scale = 1.0：直接转 FP8
        return x, None

    @staticmethod
    def _decode(data: Tensor, scale: Tensor | None) -> Tensor:
        x = data.float()
        return x if scale is None else x * scale

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.store[layer].append((self._encode(k), self._encode(v)))
        ks = torch.cat([self._decode(*ek) for ek, _ in self.store[layer]])  # (S, H_kv, D)
        vs = torch.cat([self._decode(*ev) for _, ev in self.store[layer]])
        return ks, vs

    # --8<-- [end:kv-quant]


def bytes_per_token(model: TinyLLM, mode: str) -> float:
    """每个 token 在所有层的 K + V 占多少字节（int8/int4 含每头一个 fp32 scale）。"""
    cfg = model.config
    n = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads  # K、V × 层 × KV 头
    elem = {"none": 2.0, "int8": 1.0, "int4": 0.5, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}[mode]
    scale = 4 if mode in ("int8", "int4") else 0
    return n * (cfg.head_dim * elem + scale)  # "none" 按 bf16 存储计


@torch.inference_mode()
def forward_with_kv(model: TinyLLM, ids: list[int], mode: str) -> Tensor:
    """整段前向，但注意力读到的 K/V 都经过了量化（和先写缓存、再从缓存读的解码一致）。"""
    cache = QuantKVCache(model.config.num_hidden_layers, mode)
    positions = torch.arange(len(ids))

    def attend(layer, q, k, v):
        k_all, v_all = cache.append(layer, k, v)
        return attention(q, k_all, v_all, causal_mask(positions, len(k_all)))

    return forward_tokens(model, torch.tensor(ids), positions, attend)  # (T, vocab)


def kv_eval(model: TinyLLM, ids: list[int], mode: str, length: int = 256) -> dict[str, float]:
    """在留出文本上比较：困惑度，以及相对不量化时的 KL、top-1 一致率和 logits 最大偏差。"""
    from .qmodel import compare_logits, windows

    w = windows(ids, length)
    ref = torch.cat([forward_with_kv(model, x[:-1].tolist(), "none") for x in w]).float()
    out = torch.cat([forward_with_kv(model, x[:-1].tolist(), mode) for x in w]).float()
    ppl = math.exp(F.cross_entropy(out, w[:, 1:].flatten()).item())
    return {"ppl": ppl, **compare_logits(ref, out)}
