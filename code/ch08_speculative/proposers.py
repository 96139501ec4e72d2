"""几种草稿来源：独立的小草稿模型、n-gram 提示查找、Jacobi 迭代。EAGLE 见 ``eagle.py``。

- 草稿模型：Leviathan et al. / Chen et al. 的原始做法，也是 Hugging Face 的 Assisted Generation；
- n-gram（prompt lookup decoding，Saxena 2023；vLLM 的 ``method: "ngram"``）：在已有上下文里找到与
  末尾 n 个 token 相同的片段，把它后面的 token 当草稿，不需要任何模型；
- Jacobi 解码（Santilli et al., arXiv 2305.10427）：把“上一轮目标模型在各位置的预测”
  当作这一轮的草稿，不动点迭代；Lookahead Decoding（Fu et al., arXiv 2402.02057）
  在此之上再从迭代轨迹里收集 n-gram。
"""

from __future__ import annotations

import torch
from torch import Tensor

from .lm import sample


# --8<-- [start:draft-model]
class DraftModelProposer:
    """独立的小模型自回归地猜 k 个 token，记下每一步的草稿分布 q。

    ``lm`` 是任何有 ``probs(tokens, n, temperature)`` 的对象：包了 KV Cache 的本书模型
    （``CachedLM(draft_model)``），或者测试里的马尔可夫链。
    """

    def __init__(self, lm):
        self.lm = lm

    def propose(self, seq, k, temperature, gen):
        draft, qs = [], []
        for _ in range(k):
            q = self.lm.probs(seq + draft, 1, temperature)[0]  # (vocab,)
            draft.append(int(q.argmax()) if temperature == 0 else sample(q, gen))
            qs.append(q)
        if temperature == 0 or not qs:
            return draft, None
        return draft, torch.stack(qs)

    # --8<-- [end:draft-model]

    @property
    def forwards(self) -> int:
        return self.lm.forwards


# --8<-- [start:ngram]
class NgramProposer:
    """在上下文里找与末尾 n 个 token（n 从 max_n 降到 min_n）相同的最近一处，抄它后面的 k 个。"""

    def __init__(self, max_n: int = 6, min_n: int = 3):
        if not 1 <= min_n <= max_n:
            raise ValueError("需要 1 ≤ min_n ≤ max_n")
        self.max_n, self.min_n = max_n, min_n
        self.forwards = 0  # 不跑模型

    def propose(self, seq, k, temperature, gen):
        for n in range(min(self.max_n, len(seq) - 1), self.min_n - 1, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n - 1, -1, -1):  # 从近到远，不含末尾自己
                if seq[start : start + n] == tail:
                    return seq[start + n : start + n + k], None
        return [], None

    # --8<-- [end:ngram]


# --8<-- [start:jacobi]
class JacobiProposer:
    """草稿 = 目标模型上一轮在各位置的贪心预测（Jacobi 不动点迭代）。只用于贪心。"""

    def __init__(self):
        self.guess: list[int] = []
        self.forwards = 0

    def propose(self, seq, k, temperature, gen):
        if temperature != 0:
            raise ValueError("Jacobi 解码只定义了贪心")
        guess = self.guess[:k]
        return guess + [seq[-1]] * (k - len(guess)), None  # 不够的位置随便填一个

    def feedback(self, p: Tensor, accepted: int) -> None:
        # p 的第 accepted 行已被采纳为新 token；其后各行是以“当前草稿”为前提的预测，留作下一轮草稿
        self.guess = p[accepted + 1 :].argmax(-1).tolist()

    # --8<-- [end:jacobi]
