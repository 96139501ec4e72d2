"""MoE 层：top-k 路由、专家容量、丢弃的 token 与负载均衡损失。

路由按 Mixtral（arXiv 2401.04088）的做法：对路由 logits 取 top-k，
再只在这 k 个上做 softmax 作为权重。
容量与丢弃按 GShard（arXiv 2006.16668）/ Switch Transformer（arXiv 2101.03961）：每个专家最多处理
``ceil(capacity_factor · T · k / E)`` 个 (token, 专家) 分配，超出的分配被丢弃，该 token 在这个专家上
的输出为 0（残差连接把它原样传下去）。负载均衡损失取 Switch 的形式 ``E · Σ f_i · P_i``：
路由完全均匀时等于 1，越偏越大。

``moe_naive`` 逐个 token、逐个专家地算，是参考实现；``moe_grouped`` 把分给同一专家的 token 收拢成
一个批做一次矩阵乘，再按权重加回各自的位置，这是推理框架里 fused MoE 算子做的事。两者输出相同。
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MoEConfig:
    hidden: int = 64
    ffn: int = 128
    num_experts: int = 8
    top_k: int = 2

    def __post_init__(self) -> None:
        if min(self.hidden, self.ffn, self.num_experts, self.top_k) <= 0:
            raise ValueError("MoEConfig 的各项都必须为正")
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k={self.top_k} 不能大于专家数 {self.num_experts}")


# --8<-- [start:layer]
class ToyMoE(nn.Module):
    """E 个 SwiGLU 专家 + 一个线性路由器。"""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        e, h, f = cfg.num_experts, cfg.hidden, cfg.ffn
        self.router = nn.Linear(h, e, bias=False)
        self.w_gate = nn.Parameter(torch.randn(e, h, f) / math.sqrt(h))  # (E, h, f)
        self.w_up = nn.Parameter(torch.randn(e, h, f) / math.sqrt(h))
        self.w_down = nn.Parameter(torch.randn(e, f, h) / math.sqrt(f))  # (E, f, h)

    def expert(self, e: int, x: Tensor) -> Tensor:  # x: (n, h)
        return (nn.functional.silu(x @ self.w_gate[e]) * (x @ self.w_up[e])) @ self.w_down[e]

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """返回 (全体专家上的路由概率 (T, E)，选中的专家 (T, k)，它们的权重 (T, k))。"""
        logits = self.router(x)  # (T, E)
        top_logits, top_idx = logits.topk(self.cfg.top_k, dim=-1)  # (T, k)
        return logits.softmax(-1), top_idx, top_logits.softmax(-1)
        # --8<-- [end:layer]


# --8<-- [start:capacity]
def capacity(num_tokens: int, cfg: MoEConfig, capacity_factor: float | None) -> int:
    """每个专家最多接收的分配数；``None`` 表示不设上限（推理框架通常如此）。"""
    if capacity_factor is None:
        return num_tokens * cfg.top_k
    if capacity_factor <= 0:
        raise ValueError(f"capacity_factor 必须为正，收到 {capacity_factor}")
    return math.ceil(capacity_factor * num_tokens * cfg.top_k / cfg.num_experts)


def keep_mask(top_idx: Tensor, num_experts: int, cap: int) -> Tensor:
    """按 token 顺序给每个专家排号，排在容量之后的分配被丢弃。返回 (T, k) 的布尔矩阵。"""
    onehot = nn.functional.one_hot(top_idx.flatten(), num_experts)  # (T·k, E)，token 优先
    position = (onehot.cumsum(0) * onehot).sum(-1) - 1  # 这次分配是该专家的第几个
    return (position < cap).view_as(top_idx)
    # --8<-- [end:capacity]


# --8<-- [start:loss]
def load_balance_loss(probs: Tensor, top_idx: Tensor) -> Tensor:
    """Switch 的辅助损失 E · Σ f_i · P_i：f 是分配比例（不可导），P 是平均路由概率（可导）。"""
    num_experts = probs.shape[-1]
    counts = nn.functional.one_hot(top_idx, num_experts).sum((0, 1)).to(probs.dtype)  # (E,)
    f = counts / counts.sum()
    return num_experts * (f * probs.mean(0)).sum()
    # --8<-- [end:loss]


# --8<-- [start:forward]
def moe_naive(layer: ToyMoE, x: Tensor, capacity_factor: float | None = None) -> Tensor:
    """参考实现：逐 token、逐个选中的专家计算。"""
    _, top_idx, top_w = layer.route(x)
    keep = keep_mask(top_idx, layer.cfg.num_experts, capacity(len(x), layer.cfg, capacity_factor))
    out = torch.zeros_like(x)
    for t in range(len(x)):
        for j in range(layer.cfg.top_k):
            if keep[t, j]:
                out[t] += top_w[t, j] * layer.expert(int(top_idx[t, j]), x[t : t + 1])[0]
    return out


def moe_grouped(layer: ToyMoE, x: Tensor, capacity_factor: float | None = None) -> Tensor:
    """按专家分组：每个专家对分给它的 token 做一次批量矩阵乘，再按权重加回原位。"""
    _, top_idx, top_w = layer.route(x)
    keep = keep_mask(top_idx, layer.cfg.num_experts, capacity(len(x), layer.cfg, capacity_factor))
    token = torch.arange(len(x)).repeat_interleave(layer.cfg.top_k)  # (T·k,)
    expert, weight, kept = top_idx.flatten(), top_w.flatten(), keep.flatten()
    out = torch.zeros_like(x)
    for e in range(layer.cfg.num_experts):
        sel = (expert == e) & kept
        if sel.any():
            y = layer.expert(e, x[token[sel]])  # (n_e, h)：一次矩阵乘处理该专家的全部 token
            out.index_add_(0, token[sel], weight[sel, None] * y)
    return out
    # --8<-- [end:forward]


def routing_stats(layer: ToyMoE, x: Tensor, capacity_factor: float | None) -> dict[str, float]:
    """丢弃比例、最忙专家的负载（相对平均值）、负载均衡损失。"""
    probs, top_idx, _ = layer.route(x)
    cap = capacity(len(x), layer.cfg, capacity_factor)
    keep = keep_mask(top_idx, layer.cfg.num_experts, cap)
    counts = torch.bincount(top_idx.flatten(), minlength=layer.cfg.num_experts).double()
    return {
        "capacity": cap,
        "dropped": 1 - keep.double().mean().item(),
        "max_over_mean": (counts.max() / counts.mean()).item(),
        "balance_loss": load_balance_loss(probs, top_idx).item(),
    }


def train_router(layer: ToyMoE, x: Tensor, steps: int, aux_weight: float, lr: float = 0.05):
    """只训练路由器，目标只有负载均衡损失：看它能把偏斜的路由拉回多均匀。"""
    opt = torch.optim.SGD(layer.router.parameters(), lr=lr)
    for _ in range(steps):
        probs, top_idx, _ = layer.route(x)
        loss = aux_weight * load_balance_loss(probs, top_idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer
