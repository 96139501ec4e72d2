"""验证“拒绝采样保持目标分布”的统计检验：在小词表的马尔可夫链上，分布可以精确算出来。

目标和草稿都是一阶马尔可夫链（下一个 token 只看上一个），词表 4、续写 3 个 token，
一共 4³ = 64 种结果，每种的精确概率是三个转移概率的乘积。投机采样抽 N 次，
用卡方拟合优度检验比较经验频数与精确概率。
"""

from __future__ import annotations

import itertools
from collections import Counter

import torch
from torch import Tensor

from .lm import probs_from_logits
from .proposers import DraftModelProposer
from .speculative import speculative_generate, verify


class MarkovLM:
    """一阶马尔可夫链，接口与 ``CachedLM`` 相同：``probs(tokens, n, temperature)``。"""

    def __init__(self, transition: Tensor):
        self.transition = transition  # (V, V)，每行和为 1
        self.forwards = 0
        self.vocab_size = transition.shape[0]

    @classmethod
    def random(cls, vocab: int, seed: int, floor: float = 0.05) -> MarkovLM:
        gen = torch.Generator().manual_seed(seed)
        t = torch.rand(vocab, vocab, generator=gen) + floor  # 每个转移概率都不太小
        return cls(t / t.sum(-1, keepdim=True))

    def probs(self, tokens: list[int], n: int, temperature: float) -> Tensor:
        self.forwards += 1
        logits = self.transition[tokens[len(tokens) - n :]].log()  # (n, V)
        return probs_from_logits(logits, temperature)


def exact_distribution(target: MarkovLM, prefix: list[int], length: int) -> dict[tuple, float]:
    out = {}
    for seq in itertools.product(range(target.vocab_size), repeat=length):
        prob, prev = 1.0, prefix[-1]
        for x in seq:
            prob *= float(target.transition[prev, x])
            prev = x
        out[seq] = prob
    return out


# --8<-- [start:chi2]
def chi_square(counts: Counter, probs: dict[tuple, float], n: int) -> tuple[float, int, float]:
    """卡方拟合优度：统计量、自由度、p 值（用正则化不完全伽马函数算卡方分布的上尾）。"""
    stat = sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in probs.items())
    df = len(probs) - 1
    p_value = torch.special.gammaincc(torch.tensor(df / 2), torch.tensor(stat / 2)).item()
    return stat, df, p_value


def sample_continuations(
    target: MarkovLM,
    draft: MarkovLM,
    prefix: list[int],
    length: int,
    gamma: int,
    n: int,
    seed: int = 0,
    accept_all: bool = False,
) -> Counter:
    """用投机采样（temperature = 1）抽 n 条续写。accept_all=True 是故意写错的对照组。"""
    counts: Counter = Counter()
    proposer = DraftModelProposer(draft)
    for i in range(n):
        if accept_all:  # 错误示范：草稿一律接受，得到的是草稿的分布
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
            draft_tokens, _ = proposer.propose(prefix, length, 1.0, gen)
            counts[tuple(draft_tokens)] += 1
            continue
        out, _ = speculative_generate(
            target, proposer, prefix, length, gamma, 1.0, seed * 1_000_003 + i
        )
        counts[tuple(out)] += 1
    return counts


# --8<-- [end:chi2]


__all__ = ["MarkovLM", "chi_square", "exact_distribution", "sample_continuations", "verify"]
