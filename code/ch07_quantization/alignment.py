"""精度对齐：同一个算子的两种实现，数值差多少、CI 里怎么测、解码多步之后差距怎么变。

训练框架和推理引擎常常各有一套内核：矩阵乘的切分（split-K）和累加精度不同，
RMSNorm、softmax 在哪个精度里算不同。单看一个算子差异只在最后几位，但 RL 这类
“推理生成、训练打分”的流程会把差异变成策略的 off-policy 偏差
（Yao et al., "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training", 2025-08）。
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tinyllm.model import TinyLLM
from torch import Tensor


# --8<-- [start:two-impls]
def matmul_reference(x: Tensor, w: Tensor) -> Tensor:
    """参照：fp64 里一次算完。x: (M, K)，w: (K, N)。"""
    return (x.double() @ w.double()).float()


def matmul_splitk(x: Tensor, w: Tensor, splits: int, acc_dtype: torch.dtype) -> Tensor:
    """把 K 维切成 splits 段分别相乘，再在 acc_dtype 里逐段累加（GPU 内核的 split-K 就是这样）。"""
    xs, ws = x.chunk(splits, dim=1), w.chunk(splits, dim=0)
    acc = torch.zeros(x.shape[0], w.shape[1], dtype=acc_dtype)
    for xc, wc in zip(xs, ws, strict=True):
        acc = acc + (xc.to(acc_dtype) @ wc.to(acc_dtype))  # 每段的部分和先舍入到 acc_dtype
    return acc.float()


def rmsnorm(x: Tensor, weight: Tensor, eps: float, compute_dtype: torch.dtype) -> Tensor:
    """同一个 RMSNorm，方差在 compute_dtype 里算：fp32（本书模型的写法）或 bf16。"""
    h = x.to(compute_dtype)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * h.to(x.dtype)).float()
    # --8<-- [end:two-impls]


# --8<-- [start:tolerance]
# torch.testing.assert_close 的默认容差（PyTorch 文档），按 dtype 取
DEFAULT_TOL = {
    torch.float32: (1.3e-6, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float16: (1e-3, 1e-5),
}


def check_close(actual: Tensor, expected: Tensor, dtype: torch.dtype) -> tuple[bool, str]:
    """CI 里对齐两个实现的写法：按“计算所用的低精度 dtype”取容差，失败时给出最大误差的位置。"""
    rtol, atol = DEFAULT_TOL[dtype]
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
        return True, f"通过（rtol={rtol}, atol={atol}）"
    except AssertionError as e:
        return False, str(e).splitlines()[0] + f"（rtol={rtol}, atol={atol}）"


def check_against_reference(
    candidate: Tensor, baseline: Tensor, reference: Tensor, factor: float = 2.0
) -> tuple[bool, float, float]:
    """低精度算子更实用的判据：候选实现相对高精度参照的误差，不超过同精度基线误差的 factor 倍。

    FlashAttention 的测试就这样写：固定容差对 bf16 要么太松要么太紧，和同精度的朴素实现比才公平。
    """
    err = (candidate - reference).abs().max().item()
    base = (baseline - reference).abs().max().item()
    return err <= factor * base + 1e-12, err, base
    # --8<-- [end:tolerance]


# --8<-- [start:drift]
@torch.inference_mode()
def decode_drift(ref: TinyLLM, other: TinyLLM, prompt: list[int], steps: int) -> dict:
    """两个实现（如 fp32 训练侧、bf16 推理侧）沿同一条序列逐步比较。

    teacher forcing：两边都喂参照模型贪心生成的同一串 token，看每个位置的 KL 和
    所选 token 的 log-prob 之差（RL 里重要性比值 π_train/π_infer 的对数）；
    自由生成：两边各自贪心，记下第一次分叉的步数。
    """
    from tinyllm.generate import generate

    seq = prompt + generate(ref, prompt, steps)
    x = torch.tensor([seq[:-1]])
    a = ref(x)[0, len(prompt) - 1 :].float().log_softmax(-1)  # (steps, vocab)
    b = other(x)[0, len(prompt) - 1 :].float().log_softmax(-1)
    chosen = torch.tensor(seq[len(prompt) :])[:, None]
    kl = (a.exp() * (a - b)).sum(-1)  # (steps,)
    logp_gap = (a.gather(1, chosen) - b.gather(1, chosen)).squeeze(1).abs()
    free = generate(other, prompt, steps)
    diverge = next(
        (i for i, (s, t) in enumerate(zip(seq[len(prompt) :], free, strict=True)) if s != t), None
    )
    return {"kl": kl, "logp_gap": logp_gap, "first_divergence": diverge}
    # --8<-- [end:drift]


def bucket_means(values: Tensor, size: int) -> list[float]:
    """每 size 步取一次平均，看差距随解码步数的走势。"""
    return [chunk.mean().item() for chunk in values.split(size)]


def lowp_copy(model: TinyLLM, dtype: torch.dtype = torch.bfloat16) -> TinyLLM:
    """同一份权重的低精度副本（“推理侧实现”）。"""
    import copy

    return copy.deepcopy(model).to(dtype)


def softmax_lowp(x: Tensor) -> Tensor:
    """softmax 在 bf16 里算（对照本书模型在 fp32 里算）。"""
    return F.softmax(x.to(torch.bfloat16), dim=-1).float()
