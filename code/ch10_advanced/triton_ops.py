"""自定义算子：用 Triton 写一个“残差加 + RMSNorm”的融合内核。

解码层里每个子层后面都是 ``residual = x + residual; y = rmsnorm(residual) * weight``。PyTorch eager
逐个算子执行：加法写出 residual，平方、求均值、rsqrt、两次乘法各自再读写一遍整行。融合内核一个
程序处理一行：把 x 和 residual 读进来一次，在寄存器里做完全部运算，只写出新的 residual 和 y。
vLLM 里对应的算子叫 ``fused_add_rms_norm``（``vllm._custom_ops``，CUDA 实现）。

没有 GPU 时，设 ``TRITON_INTERPRET=1`` 让 Triton 用解释器在 CPU 上逐个程序执行同一份内核代码，
用来测正确性（不能用来测速度）。它必须在 triton 第一次被导入之前设置，所以由包的入口
``ch10_advanced/__init__.py`` 按需设置。
"""

from __future__ import annotations

import torch

from . import TRITON_TOO_LATE  # 包的入口已按需打开解释器模式

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - 依赖里钉了 triton；这里只为给出一句清楚的提示
    triton = tl = None


def require_triton() -> None:
    if triton is None:
        raise RuntimeError("需要 triton：pip install triton==3.9.0")
    if TRITON_TOO_LATE:
        raise RuntimeError(
            "triton 在打开解释器模式之前已被导入（例如先用了 torch 的优化器）；"
            "请在启动 Python 前 export TRITON_INTERPRET=1，或最先 import ch10_advanced"
        )


# --8<-- [start:reference]
def add_rmsnorm_reference(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """未融合的参考实现：每一步都是一个单独的 PyTorch 算子。返回 (y, 新 residual)。"""
    residual = x + residual  # (rows, hidden)
    variance = residual.float().pow(2).mean(-1, keepdim=True)
    y = residual.float() * torch.rsqrt(variance + eps)
    return (y * weight.float()).to(x.dtype), residual
    # --8<-- [end:reference]


if triton is not None:
    # --8<-- [start:kernel]
    @triton.jit
    def _add_rmsnorm_kernel(x_ptr, res_ptr, w_ptr, y_ptr, hidden, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0)  # 一个程序处理一行
        cols = tl.arange(0, BLOCK)
        mask = cols < hidden
        offs = row * hidden + cols
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        r = (tl.load(res_ptr + offs, mask=mask, other=0.0).to(tl.float32) + x).to(
            res_ptr.dtype.element_ty
        )
        tl.store(res_ptr + offs, r, mask=mask)  # 就地更新 residual
        r = r.to(tl.float32)  # 与参考实现一样，用舍入到存储精度后的 residual 做归一化
        inv_rms = 1.0 / tl.sqrt(tl.sum(r * r, axis=0) / hidden + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + offs, (r * inv_rms * w).to(y_ptr.dtype.element_ty), mask=mask)
        # --8<-- [end:kernel]


# --8<-- [start:launch]
def add_rmsnorm_fused(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """融合版本：与参考实现语义相同，residual 就地更新（vLLM 的同名算子也是如此）。"""
    require_triton()
    if x.shape != residual.shape or x.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"形状不匹配：x {tuple(x.shape)}、residual {tuple(residual.shape)}、"
            f"weight {tuple(weight.shape)}"
        )
    x2, r2 = x.reshape(-1, x.shape[-1]).contiguous(), residual.view(-1, x.shape[-1])
    y = torch.empty_like(x2)
    hidden = x2.shape[1]
    _add_rmsnorm_kernel[(x2.shape[0],)](
        x2, r2, weight, y, hidden, eps, BLOCK=triton.next_power_of_2(hidden)
    )
    return y.view_as(x), residual
    # --8<-- [end:launch]


# --8<-- [start:traffic]
def traffic_bytes(rows: int, hidden: int, elem: int = 2) -> dict[str, int]:
    """显存读写量（字节）。未融合的按参考实现在 eager 下实际执行的每个算子逐一计：
    每个算子读它的输入、写它的输出；FP32 中间结果每个元素 4 字节。"""
    n, f32 = rows * hidden, 4
    fused = elem * (2 * n + 2 * n + hidden)  # 读 x、residual、w，写 residual、y
    unfused = (
        elem * 3 * n  # residual = x + residual：读两份、写一份
        + 2 * (elem + f32) * n  # 两次 residual.float()：读 BF16、写 FP32
        + 2 * f32 * n  # pow(2)
        + f32 * n + f32 * rows  # mean(-1)：每行写一个数
        + 4 * f32 * rows  # variance + eps、rsqrt：各读写每行一个数
        + 2 * f32 * n + f32 * rows  # * rsqrt(...)：读整行与每行的数，写整行
        + (elem + f32) * hidden  # weight.float()
        + 2 * f32 * n + f32 * hidden  # * weight
        + (f32 + elem) * n  # .to(x.dtype)
    )  # fmt: skip
    return {"fused": fused, "unfused": unfused}
    # --8<-- [end:traffic]
