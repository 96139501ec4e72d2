"""Roofline 与三类瓶颈：算力受限、带宽受限、开销受限。

Roofline 模型见 Williams, Waterman, Patterson, *Roofline: An Insightful Visual Performance
Model for Multicore Architectures*, CACM 52(4), 2009, doi:10.1145/1498765.1498785；
“计算 / 内存带宽 / 开销”三分法见 Horace He, *Making Deep Learning Go Brrrr From First
Principles*, 2022, https://horace.io/brrr_intro.html 。

做法：分别估出一次前向的 FLOP、必须搬运的字节数和算子个数，
各除以峰值算力、带宽和单个算子的调度开销，三个时间里最大的那个就是瓶颈。
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tinyllm import ModelConfig

from .vram import DTYPE_BYTES, kv_bytes_per_token

# 本书模型每层的算子数（eager 模式下各自启动一次）：2 个 RMSNorm、Q/K/V/O 四个投影、2 次 RoPE、
# QKᵀ、softmax、乘 V、2 次残差加、gate/up/down 三个投影、SiLU×up。
OPS_PER_LAYER = 18


@dataclass(frozen=True)
class Hardware:
    name: str
    peak_tflops: float
    bandwidth_gbps: float
    overhead_us: float  # 每个算子的调度/启动开销


# --8<-- [start:measure]
def best_time(fn, repeats: int) -> float:
    """取多次运行的最短时间：最短的那次最接近硬件能力，其余是被打扰的。"""
    fn()  # 预热：分配内存、选择 kernel
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_bandwidth_gbps(mb: int = 256, repeats: int = 5) -> float:
    """拷贝一块大于缓存的数组：读 mb + 写 mb。"""
    src = torch.empty(mb * 2**20, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src)
    return 2 * src.numel() / best_time(lambda: dst.copy_(src), repeats) / 1e9


def measure_matmul_tflops(n: int = 1024, repeats: int = 5, dtype=torch.float32) -> float:
    """n×n 方阵乘：2n³ 次浮点运算。"""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b, repeats) / 1e12


def measure_overhead_us(repeats: int = 2000) -> float:
    """对一个只有 1 个元素的张量做加法：计算量几乎为零，耗时全是框架调度开销。"""
    x = torch.ones(1)

    def many():
        for _ in range(repeats):
            torch.add(x, x)

    return best_time(many, 3) / repeats * 1e6
    # --8<-- [end:measure]


def measure_this_machine(mb: int = 256, n: int = 1024) -> Hardware:
    return Hardware(
        name=f"本机 CPU（{torch.get_num_threads()} 线程，fp32）",
        peak_tflops=measure_matmul_tflops(n),
        bandwidth_gbps=measure_bandwidth_gbps(mb),
        overhead_us=measure_overhead_us(),
    )


@dataclass(frozen=True)
class Workload:
    name: str
    flops: float
    bytes: float
    ops: int

    @property
    def intensity(self) -> float:
        """算术强度：每搬运 1 字节做多少次浮点运算。"""
        return self.flops / self.bytes


# --8<-- [start:workloads]
def matmul_params(cfg: ModelConfig) -> int:
    """参与矩阵乘的参数：除去嵌入表（嵌入是查表，不做乘法）和 RMSNorm 的权重。"""
    h = cfg.hidden_size
    return (
        cfg.num_parameters()
        - cfg.vocab_size * h * (not cfg.tie_word_embeddings)
        - (2 * cfg.num_hidden_layers + 1) * h
    )


def attention_flops(cfg: ModelConfig, q_tokens: int, kv_tokens: int) -> float:
    """QKᵀ 与乘 V：每对 (query, key) 每个头 2·d 次乘加 × 2。"""
    return 4 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * q_tokens * kv_tokens


def prefill(cfg: ModelConfig, batch: int, prompt: int, dtype="bf16", kv_dtype=None) -> Workload:
    """读一遍权重，算 batch×prompt 个 token，写入它们的 KV。"""
    flops = (
        2 * matmul_params(cfg) * batch * prompt + attention_flops(cfg, prompt, prompt) / 2 * batch
    )
    weights = matmul_params(cfg) * DTYPE_BYTES[dtype]  # 嵌入表只读用到的几行，忽略不计
    kv = kv_bytes_per_token(cfg, kv_dtype or dtype) * batch * prompt
    ops = OPS_PER_LAYER * cfg.num_hidden_layers + 2
    return Workload(f"prefill b={batch} L={prompt}", flops, weights + kv, ops)


def decode(cfg: ModelConfig, batch: int, context: int, dtype="bf16", kv_dtype=None) -> Workload:
    """每步：读一遍权重 + 读全部历史 KV，只为 batch 个新 token 做计算。"""
    flops = 2 * matmul_params(cfg) * batch + attention_flops(cfg, 1, context) * batch
    weights = matmul_params(cfg) * DTYPE_BYTES[dtype]  # 嵌入表只读用到的几行，忽略不计
    kv = kv_bytes_per_token(cfg, kv_dtype or dtype) * batch * context
    ops = OPS_PER_LAYER * cfg.num_hidden_layers + 2
    return Workload(f"decode b={batch} ctx={context}", flops, weights + kv, ops)
    # --8<-- [end:workloads]


# --8<-- [start:classify]
@dataclass(frozen=True)
class Verdict:
    workload: Workload
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def bound(self) -> str:
        times = {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.overhead_s}
        return max(times, key=times.get)

    @property
    def attainable_tflops(self) -> float:
        """Roofline 上限：min(峰值, 强度 × 带宽)。"""
        return self.workload.flops / max(self.compute_s, self.memory_s) / 1e12


def classify(w: Workload, hw: Hardware) -> Verdict:
    return Verdict(
        workload=w,
        compute_s=w.flops / (hw.peak_tflops * 1e12),
        memory_s=w.bytes / (hw.bandwidth_gbps * 1e9),
        overhead_s=w.ops * hw.overhead_us * 1e-6,
    )
    # --8<-- [end:classify]


# --8<-- [start:time-model]
@torch.inference_mode()
def time_forward(model, batch: int, new_tokens: int, context: int = 0, repeats: int = 5) -> float:
    """实测一次前向。

    context = 0 为预填充 new_tokens 个 token；否则先放入 context 个历史 token，再计时解码一步。
    """
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    if context == 0:
        ids = torch.randint(0, vocab, (batch, new_tokens), generator=gen)  # (B, T)
        return best_time(lambda: model(ids), repeats)
    model.setup_cache(batch, context + new_tokens)
    try:
        model(torch.randint(0, vocab, (batch, context), generator=gen), torch.arange(context))
        step = torch.randint(0, vocab, (batch, new_tokens), generator=gen)
        pos = torch.arange(context, context + new_tokens)
        return best_time(lambda: model(step, pos), repeats)
    finally:
        model.clear_cache()
    # --8<-- [end:time-model]


BOUND_ZH = {"compute": "算力受限", "memory": "带宽受限", "overhead": "开销受限"}
