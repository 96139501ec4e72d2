"""投机采样：草稿先猜 γ 个 token，目标模型一次前向验证，按拒绝采样决定接受几个。

算法来自 Leviathan, Kalman, Matias, "Fast Inference from Transformers via Speculative Decoding"
（arXiv 2211.17192）与 Chen et al., "Accelerating Large Language Model Decoding with Speculative
Sampling"（arXiv 2302.01318）：草稿 token x 以 min(1, p(x)/q(x)) 的概率接受；拒绝时从
norm(max(0, p − q)) 重新采样。这样得到的每个 token 严格服从目标分布 p，与草稿好坏无关——
草稿只影响“一次验证能接受几个”。贪心（temperature = 0）时退化为“草稿与目标的 argmax 相同就接受”。

草稿没有概率（n-gram、Jacobi 这类确定性提议）时把 q 当作落在草稿 token 上的 one-hot：
接受概率是 p(x)，拒绝后从去掉 x 的 p 里采样——vLLM 0.33.0 对 ngram 也是这样处理的。
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from .lm import CachedLM, sample


class Proposer(Protocol):
    def propose(
        self, seq: list[int], k: int, temperature: float, gen: torch.Generator
    ) -> tuple[list[int], Tensor | None]:
        """返回至多 k 个草稿 token，以及它们的草稿分布 (len, vocab)；确定性提议返回 None。"""
        ...


# --8<-- [start:verify]
def verify(
    p: Tensor, q: Tensor | None, draft: list[int], temperature: float, gen: torch.Generator
) -> tuple[int, int]:
    """p: (len(draft) + 1, vocab) 目标分布。返回 (接受的草稿个数, 接下来那个 token)。"""
    if temperature == 0:  # 贪心：草稿与目标的 argmax 一致才接受
        target = p.argmax(-1).tolist()
        n = 0
        while n < len(draft) and draft[n] == target[n]:
            n += 1
        return n, target[n]
    for i, x in enumerate(draft):
        qx = 1.0 if q is None else float(q[i, x])
        if torch.rand((), generator=gen) * qx <= p[i, x]:  # 以 min(1, p/q) 的概率接受
            continue
        residual = p[i].clone()
        if q is None:
            residual[x] = 0.0  # q 是落在 x 上的 one-hot
        else:
            residual = (residual - q[i]).clamp(min=0)
        total = residual.sum()
        return i, sample(residual / total if total > 0 else p[i], gen)
    return len(draft), sample(p[len(draft)], gen)  # 全部接受：再从 p 白拿一个
    # --8<-- [end:verify]


@dataclass
class SpecStats:
    steps: int = 0  # 验证轮数 = 目标模型前向次数（不含 EAGLE 首轮补的一次预填充）
    proposed: int = 0
    accepted: int = 0
    rejections: int = 0  # 草稿在中途被拒绝的轮数
    generated: int = 0
    accepted_at: list[int] = field(default_factory=list)  # 第 i 个草稿位置被接受的次数

    def record(self, proposed: int, accepted: int) -> None:
        self.steps += 1
        self.proposed += proposed
        self.accepted += accepted
        self.rejections += accepted < proposed
        self.generated += accepted + 1
        while len(self.accepted_at) < proposed:
            self.accepted_at.append(0)
        for i in range(accepted):
            self.accepted_at[i] += 1

    @property
    def alpha(self) -> float:
        """逐 token 接受率 α 的估计：接受数 / (接受数 + 拒绝次数)。

        拒绝之后的草稿位置没有被检验，所以不能用“接受数 / 草稿数”（会低估 α）；
        把每轮看成“直到第一次拒绝”的几何试验，这个比值就是 α 的最大似然估计。
        """
        trials = self.accepted + self.rejections
        return self.accepted / trials if trials else 0.0

    @property
    def tokens_per_step(self) -> float:
        return self.generated / self.steps if self.steps else 0.0


# --8<-- [start:generate]
def speculative_generate(
    target: CachedLM,
    proposer: Proposer,
    prompt: list[int],
    max_new_tokens: int,
    gamma: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[list[int], SpecStats]:
    """草稿提议 → 目标一次前向验证 γ + 1 个位置 → 接受前缀 + 1 个目标 token，循环。"""
    if gamma < 0 or max_new_tokens <= 0 or not prompt:
        raise ValueError("需要 gamma ≥ 0、max_new_tokens > 0、非空提示")
    gen = torch.Generator().manual_seed(seed)
    seq, stats = list(prompt), SpecStats()
    while len(seq) - len(prompt) < max_new_tokens:
        room = max_new_tokens - (len(seq) - len(prompt)) - 1  # 留一个位置给目标自己的 token
        k = min(gamma, room)
        draft, q = proposer.propose(seq, k, temperature, gen) if k else ([], None)
        p = target.probs(seq + draft, len(draft) + 1, temperature)  # 一次前向验证全部草稿
        n, nxt = verify(p, q, draft, temperature, gen)
        seq += draft[:n] + [nxt]
        stats.record(len(draft), n)
        if hasattr(proposer, "feedback"):
            proposer.feedback(p, n)  # Jacobi 用目标这一轮的输出当下一轮的草稿
    return seq[len(prompt) : len(prompt) + max_new_tokens], stats
    # --8<-- [end:generate]


# --8<-- [start:theory]
def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """每次目标前向期望产出的 token 数：(1 − α^(γ+1)) / (1 − α)（Leviathan et al. 式 (1)）。"""
    if not 0 <= alpha <= 1 or gamma < 0:
        raise ValueError(f"需要 0 ≤ α ≤ 1、γ ≥ 0，得到 α={alpha}、γ={gamma}")
    if alpha == 1:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """墙钟加速比：(1 − α^(γ+1)) / ((1 − α)(γc + 1))，c = 草稿一次前向 / 目标一次前向的耗时。"""
    if c < 0:
        raise ValueError(f"耗时比 c 不能为负，得到 {c}")
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1)
    # --8<-- [end:theory]
