"""整数量化的基本功：对称 / 非对称，按张量 / 按通道 / 按组，INT8 / INT4，以及误差指标。

线性量化把实数 x 映射成整数 q = clamp(round(x / s) + z)，反量化 x̂ = (q - z) · s。
对称量化 z = 0、s = amax / qmax；非对称量化用 [min, max] 定出 s 和零点 z。
粒度决定“几个数共用一个 s”：整个张量一个、每个输出通道（权重的一行）一个、每 group_size 个一个。
GPTQ（arXiv 2210.17323）、AWQ（arXiv 2306.00978）的 INT4 检查点都是“按组、group_size=128”。
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

GRANULARITIES = ("tensor", "channel", "group")


# --8<-- [start:spec]
@dataclass(frozen=True)
class QuantSpec:
    bits: int = 8
    symmetric: bool = True
    granularity: str = "channel"  # tensor | channel | group
    group_size: int = 128  # 只在 granularity="group" 时使用

    def __post_init__(self) -> None:
        if self.bits not in (2, 3, 4, 8):
            raise ValueError(f"bits 只支持 2/3/4/8，收到 {self.bits}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity 必须是 {GRANULARITIES} 之一，收到 {self.granularity!r}")
        if self.granularity == "group" and (self.group_size <= 0 or self.group_size % 8):
            raise ValueError(
                f"group_size 必须是 8 的正整数倍（INT4 打包的要求），收到 {self.group_size}"
            )

    @property
    def qmin(self) -> int:  # 对称量化用 [-qmax, qmax]，丢掉 -2^(b-1) 让正负对称（INT4 即 [-7, 7]）
        return -self.qmax if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    def label(self) -> str:
        g = f"g{self.group_size}" if self.granularity == "group" else self.granularity
        return f"INT{self.bits}-{'sym' if self.symmetric else 'asym'}-{g}"

    # --8<-- [end:spec]


@dataclass
class QTensor:
    """量化后的权重：整数 q、每组的 scale 与零点，以及还原形状所需的信息。"""

    q: Tensor  # int16 存储（非对称 INT8 取值到 255，放不进 int8），取值在 [qmin, qmax]
    scale: Tensor  # (groups, 1) float32
    zero: Tensor  # (groups, 1) int32，对称量化时全 0
    spec: QuantSpec
    shape: torch.Size

    def nbytes(self) -> int:
        """按真实部署的存储算：整数按 bits 位打包，scale 用 fp16，非对称时零点也按 bits 位存。"""
        n = self.q.numel() * self.spec.bits // 8
        n += self.scale.numel() * 2
        if not self.spec.symmetric:
            n += math.ceil(self.zero.numel() * self.spec.bits / 8)
        return n


def _groups(w: Tensor, spec: QuantSpec) -> Tensor:
    """把权重排成 (组数, 每组元素数)：同一行共用一个 scale。"""
    if spec.granularity == "tensor":
        return w.reshape(1, -1)
    if w.dim() != 2:
        raise ValueError("按通道 / 按组量化需要 2 维权重 (out, in)")
    if spec.granularity == "channel":
        return w
    pad = -w.shape[1] % spec.group_size  # 本书模型的 688 维不是 32 的倍数：最后一组补 0
    return F.pad(w, (0, pad)).reshape(-1, spec.group_size)  # 每行切成 ceil(in/group_size) 组


def to_fp16(scale: Tensor) -> Tensor:
    """scale 按部署时的存储精度（fp16，与 GPTQ/AWQ 相同）向上取到可表示的值，再用它求整数。

    这样伪量化（QAT 训练时）与真量化（部署时）逐位相同，不会因 scale 精度不同而“训推不一致”；
    向上取保证 amax / scale 不超过 qmax，最大的数不会被截断。
    """
    half = scale.clamp(min=2**-14).half()
    up = torch.nextafter(half, torch.full_like(half, float("inf")))
    return torch.where(half.float() < scale, up, half).float()


# --8<-- [start:quantize]
def quantize(w: Tensor, spec: QuantSpec) -> QTensor:
    g = _groups(w.detach().float(), spec)  # (G, n)
    if spec.symmetric:
        scale = to_fp16(g.abs().amax(dim=1, keepdim=True) / spec.qmax)
        zero = torch.zeros_like(scale, dtype=torch.int32)
    else:
        lo = g.amin(dim=1, keepdim=True).clamp(max=0)  # 区间必须含 0，0 才能被精确表示
        hi = g.amax(dim=1, keepdim=True).clamp(min=0)
        scale = to_fp16((hi - lo) / spec.qmax)
        zero = torch.round(-lo / scale).to(torch.int32)
    q = torch.clamp(torch.round(g / scale) + zero, spec.qmin, spec.qmax)
    return QTensor(q.to(torch.int16), scale, zero, spec, w.shape)


def dequantize(qt: QTensor) -> Tensor:
    x = (qt.q.float() - qt.zero) * qt.scale  # (G, n)
    rows = qt.shape[0] if len(qt.shape) == 2 and qt.spec.granularity != "tensor" else 1
    return x.reshape(rows, -1)[:, : qt.shape.numel() // rows].reshape(qt.shape)  # 去掉补的 0
    # --8<-- [end:quantize]


def fake_quantize(w: Tensor, spec: QuantSpec) -> Tensor:
    """量化再反量化：数值上等于部署时看到的权重，类型仍是浮点。"""
    return dequantize(quantize(w, spec)).to(w.dtype)


# --8<-- [start:metrics]
def error_metrics(x: Tensor, x_hat: Tensor) -> dict[str, float]:
    """MSE、最大绝对误差、SQNR（信号与量化噪声功率比，dB，越大越好）和余弦相似度。"""
    x, x_hat = x.detach().float().flatten(), x_hat.detach().float().flatten()
    err = x - x_hat
    mse = err.pow(2).mean().item()
    signal = x.pow(2).mean().item()
    return {
        "mse": mse,
        "max_abs": err.abs().max().item(),
        "sqnr_db": 10 * math.log10(signal / mse) if mse > 0 else math.inf,
        "cosine": torch.nn.functional.cosine_similarity(x, x_hat, dim=0).item(),
    }
    # --8<-- [end:metrics]
