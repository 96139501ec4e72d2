"""实测融合与未融合的“残差加 + RMSNorm”。

CPU 上没有 Triton 后端可以计时（解释器只用于验证正确性），融合版本由 TorchInductor 从同一份参考
实现生成：它把整串逐元素运算和求均值合成一个 C++ 循环。GPU 上直接比较 eager 与 Triton 内核。
两种情形都取多次计时的中位数。
"""

from __future__ import annotations

import statistics
import time

import torch

from .triton_ops import add_rmsnorm_fused, add_rmsnorm_reference, traffic_bytes


def median_ms(fn, repeats: int, sync=lambda: None) -> float:
    for _ in range(3):  # 预热（含编译）
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


# --8<-- [start:bench]
def bench(device: str, rows: int, hidden: int, repeats: int) -> list[str]:
    """返回几行结果；没有 GPU 却要求 cuda 时抛出一句话的 OSError。"""
    if device == "cuda" and not torch.cuda.is_available():
        raise OSError(
            "没有可用的 CUDA GPU；去掉 --device cuda 在 CPU 上比较 eager 与 torch.compile"
        )
    dtype = torch.bfloat16
    x, res = (torch.randn(rows, hidden, dtype=dtype, device=device) for _ in range(2))
    w = torch.randn(hidden, dtype=dtype, device=device)
    if device == "cuda":
        fused_name, fused = "Triton 融合内核", lambda: add_rmsnorm_fused(x, res, w)
        sync = torch.cuda.synchronize
    else:
        compiled = torch.compile(add_rmsnorm_reference, dynamic=False)
        fused_name, fused = "torch.compile 融合", lambda: compiled(x, res, w)
        sync = lambda: None  # noqa: E731
    eager = median_ms(lambda: add_rmsnorm_reference(x, res, w), repeats, sync)
    fast = median_ms(fused, repeats, sync)
    mb = traffic_bytes(rows, hidden)
    return [
        f"{device}，BF16，{rows}×{hidden}，{repeats} 次取中位数：",
        f"  eager 未融合：{eager:.3f} ms（按算子计的读写 {mb['unfused'] / 2**20:.1f} MiB）",
        f"  {fused_name}：{fast:.3f} ms（读写 {mb['fused'] / 2**20:.1f} MiB）",
        f"  加速 {eager / fast:.2f}×",
    ]
    # --8<-- [end:bench]
