"""投机采样要用的“语言模型”接口：给一串 token，返回最后 n 个位置各自的下一个 token 分布。

``CachedLM`` 把本书模型包一层 KV Cache：它记得缓存里是哪串 token，新请求和它的最长公共前缀
不用重算，只把后面的 token 喂进去。验证阶段被拒绝的草稿 token 也进过缓存，下一轮公共前缀
在它们之前就断了，自然被覆盖——预分配缓存加位置掩码，“回滚”只是少记几个 token。
"""

from __future__ import annotations

import time

import torch
from tinyllm.model import TinyLLM
from torch import Tensor


def probs_from_logits(logits: Tensor, temperature: float) -> Tensor:
    """temperature = 0 时返回 argmax 的 one-hot（贪心），否则 softmax(logits / T)。"""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits.float() / temperature, dim=-1)


def sample(probs: Tensor, gen: torch.Generator) -> int:
    return int(torch.multinomial(probs, 1, generator=gen))


# --8<-- [start:cached-lm]
class CachedLM:
    """带 KV Cache 的本书模型；``forwards`` 数前向次数，``features`` 存最后一层的隐藏状态。"""

    def __init__(self, model: TinyLLM, max_len: int | None = None):
        """max_len：缓存容量（提示 + 生成 + γ + 1 就够）；注意力对整段缓存做掩码，开大了白算。"""
        self.model = model.eval()
        self.max_len = max_len or model.config.max_position_embeddings
        model.setup_cache(batch=1, max_seq=self.max_len)
        self.cached: list[int] = []  # 缓存里 K/V 对应的 token
        self.forwards, self.seconds = 0, 0.0
        self.features = torch.zeros(self.max_len, model.config.hidden_size)  # EAGLE 用
        self._hook = model.model.norm.register_forward_hook(self._keep_features)
        self._fed: Tensor | None = None

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    def _keep_features(self, module, inputs, output) -> None:
        if self._fed is not None:  # 最后一个 RMSNorm 的输入就是最后一层的输出（EAGLE 的“特征”）
            self.features[self._fed] = inputs[0][0].detach().float()

    @torch.inference_mode()
    def logits(self, tokens: list[int], n: int) -> Tensor:
        """返回 (n, vocab)：第 i 行是 tokens[: len - n + 1 + i] 之后的下一个 token 的 logits。"""
        if not 1 <= n <= len(tokens) or len(tokens) > self.max_len:
            raise ValueError(f"需要 1 ≤ n ≤ {len(tokens)} 且总长不超过 {self.max_len}")
        start = 0
        for a, b in zip(self.cached, tokens[: len(tokens) - n], strict=False):
            if a != b:
                break
            start += 1  # 与缓存的最长公共前缀（最后 n 个必须重算，才拿得到它们的 logits）
        pos = torch.arange(start, len(tokens))
        t0, self._fed = time.perf_counter(), pos
        out = self.model(torch.tensor([tokens[start:]]), pos)[0]  # (len - start, vocab)
        self._fed = None
        self.cached, self.forwards = list(tokens), self.forwards + 1
        self.seconds += time.perf_counter() - t0
        return out[-n:].float()

    # --8<-- [end:cached-lm]

    def probs(self, tokens: list[int], n: int, temperature: float) -> Tensor:
        return probs_from_logits(self.logits(tokens, n), temperature)

    def close(self) -> None:
        self.model.clear_cache()
        self._hook.remove()
