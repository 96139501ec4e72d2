"""torch.compile 用在本书小模型的解码步上：先付一次编译时间，换每步更短的执行时间。

TorchDynamo 在字节码层面截获 Python 函数、得到 FX 图，TorchInductor 把图里能融合的逐元素运算
合成少数几个内核（CPU 上生成 C++/OpenMP 代码，GPU 上生成 Triton）；见 PyTorch 2 论文
（Ansel 等，ASPLOS 2024）。解码一步在小模型上是几十个小算子，Python 与算子调度的开销占大头，
正是编译最能省的情形。

被编译的单元是 ``layers_and_head``：全部解码层加最后的归一化和输出投影。直接编译 ``model.forward``
不行：它开头的越界检查 ``int(input_pos[-1])`` 把张量里的值取成 Python 整数，Dynamo 在那里断图，
在 ``dynamic=False`` 下还把这个整数当常量特化，位置每变一次就重编译一次（8 次后撞到重编译上限、
退回 eager；默认的 ``dynamic=None`` 重编译一次后改用动态形状，但断图仍在）。
所以 ``decode_step`` 在编译区外面准备 RoPE 和掩码，只把形状固定的计算交给编译器：``pos`` 每步的值
不同但形状不变，整个生成只编译一次。
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass

import torch
from tinyllm import TinyLLM


def compiler_available() -> str | None:
    """Inductor 在 CPU 上要调用 C++ 编译器；缺了就返回一句说明。"""
    if shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"):
        return None
    return "torch.compile 在 CPU 上需要 C++ 编译器（g++）；Debian/Ubuntu 上 apt-get install g++"


# --8<-- [start:step]
def layers_and_head(model: TinyLLM, x, cos, sin, mask, pos) -> torch.Tensor:
    """编译的部分：x (1, 1, hidden) 过全部解码层 → logits (1, vocab)。"""
    for layer in model.model.layers:
        x = layer(x, cos, sin, mask, pos)
    return model.lm_head(model.model.norm(x))[:, -1]


def decode_step(model: TinyLLM, token: torch.Tensor, pos: torch.Tensor, body=layers_and_head):
    """一步解码：token (1, 1)、pos (1,)。RoPE 查表与因果掩码留在编译区外。"""
    cos, sin = model.rope_cos[pos], model.rope_sin[pos]  # (1, D)
    mask = torch.arange(model.cache_len)[None, :] <= pos[:, None]  # (1, S)
    return body(model, model.model.embed_tokens(token), cos, sin, mask, pos)


@torch.inference_mode()
def greedy(
    step, model: TinyLLM, prompt: list[int], new_tokens: int
) -> tuple[list[int], list[float]]:
    """用给定的 step 函数做贪心解码，返回 token 与每个解码步的耗时（秒）。"""
    model.setup_cache(batch=1, max_seq=len(prompt) + new_tokens)
    try:
        logits = model(torch.tensor([prompt]), torch.arange(len(prompt)))[:, -1]  # prefill 不计时
        out, times = [], []
        for i in range(new_tokens):
            token = logits.argmax(-1, keepdim=True)  # (1, 1)
            out.append(int(token))
            start = time.perf_counter()
            logits = step(model, token, torch.tensor([len(prompt) + i]))
            times.append(time.perf_counter() - start)
        return out, times
    finally:
        model.clear_cache()
        # --8<-- [end:step]


@dataclass(frozen=True)
class CompileReport:
    eager_ms: float  # 每步中位数
    compiled_ms: float
    compile_s: float  # 第一次调用（含编译）比稳态多花的时间
    same_tokens: bool

    @property
    def speedup(self) -> float:
        return self.eager_ms / self.compiled_ms

    @property
    def break_even_steps(self) -> float:
        """编译时间要多少个解码步才能省回来。"""
        saved = (self.eager_ms - self.compiled_ms) / 1e3
        return self.compile_s / saved if saved > 0 else float("inf")


# --8<-- [start:measure]
def measure(model: TinyLLM, prompt: list[int], new_tokens: int = 64, mode: str | None = None):
    """同一模型、同一提示：eager 与 torch.compile 的每步耗时、编译时间，以及输出是否一致。"""
    torch._dynamo.reset()
    body = torch.compile(layers_and_head, dynamic=False, mode=mode)

    def compiled(model, token, pos):
        return decode_step(model, token, pos, body)

    eager_tokens, eager_times = greedy(decode_step, model, prompt, new_tokens)
    tokens, times = greedy(compiled, model, prompt, new_tokens)  # 第一步触发编译
    steady_ms = statistics.median(times[2:]) * 1e3
    return CompileReport(
        eager_ms=statistics.median(eager_times[2:]) * 1e3,
        compiled_ms=steady_ms,
        compile_s=sum(times[:2]) - 2 * steady_ms / 1e3,
        same_tokens=tokens == eager_tokens,
    )
    # --8<-- [end:measure]
