"""异构部署：按算术强度把 RL 的训练和 rollout 分别放到最划算的卡上。

训练一步的每个 token 要做约 6·P 次浮点运算（前向 2P、反向 4P），权重和梯度在一个微批里只读写一遍，
激活值按 Korthikanti 等（arXiv 2205.05198）的估算每层每 token 约 34·h 字节，写一次读一次，所以算术
强度在千这个量级，受算力限制。rollout 的解码每步读一遍权重和全部历史 KV，只为 batch 个 token
做计算，强度与 batch 同量级，受带宽限制。两者差两个数量级，同一种卡不可能对两边都最划算。

时间用屋脊线模型估：``max(FLOPs / 峰值算力, 字节 / 带宽)``，不含效率折扣；单价是使用者给的假设。
GPU 规格与模型结构取自第 3 章的数据表（有出处）。
"""

from __future__ import annotations

from dataclasses import dataclass

from ch03_gpu.roofline import Workload, decode, matmul_params
from ch03_gpu.specs import GpuSpec
from ch03_gpu.vram import kv_cache_bytes, weight_bytes
from tinyllm import ModelConfig

ACTIVATION_BYTES_PER_LAYER_TOKEN = 34  # × hidden；FlashAttention 下不存 s×s 的注意力矩阵


# --8<-- [start:train]
def train_microbatch(cfg: ModelConfig, tokens: int) -> Workload:
    """一个微批的训练（BF16 权重，FP32 梯度累加）：前向 + 反向。"""
    p = matmul_params(cfg)
    flops = 6 * p * tokens  # 前向 2P，反向 4P（对输入、对权重各 2P）
    weights = 2 * 2 * p  # BF16 权重：前向读一遍、反向再读一遍
    grads = 2 * 4 * p  # FP32 梯度累加：读一遍、写一遍
    acts = 2 * ACTIVATION_BYTES_PER_LAYER_TOKEN * cfg.hidden_size * cfg.num_hidden_layers * tokens
    return Workload(f"train tokens={tokens}", flops, weights + grads + acts, 0)
    # --8<-- [end:train]


# --8<-- [start:place]
@dataclass(frozen=True)
class Placement:
    gpu: str
    seconds_per_token: float
    usd_per_million: float
    bound: str  # compute / memory


def roofline_seconds(w: Workload, gpu: GpuSpec) -> tuple[float, str]:
    compute = w.flops / (gpu.bf16_tflops * 1e12)
    memory = w.bytes / (gpu.bandwidth_gbps * 1e9)
    return max(compute, memory), "compute" if compute >= memory else "memory"


def place(w: Workload, tokens: int, gpus: list[GpuSpec], usd_per_hour: dict[str, float]):
    """每种卡上处理一个 token 的时间与成本，按每百万 token 成本从低到高排。"""
    rows = []
    for gpu in gpus:
        seconds, bound = roofline_seconds(w, gpu)
        per_token = seconds / tokens
        usd = usd_per_hour[gpu.key] / 3600 * per_token * 1e6
        rows.append(Placement(gpu.key, per_token, usd, bound))
    return sorted(rows, key=lambda r: r.usd_per_million)
    # --8<-- [end:place]


def rollout_fits(cfg: ModelConfig, gpu: GpuSpec, batch: int, context: int,
                 utilization: float = 0.92) -> bool:  # fmt: skip
    """BF16 权重加 batch 条 context 长的 KV 能否装进一张卡（0.92 是 vLLM 0.33.0 的
    ``gpu_memory_utilization`` 默认值；激活与 CUDA Graph 的开销未计，实际余量更小）。"""
    need = weight_bytes(cfg) + kv_cache_bytes(cfg, context, batch)
    return need <= gpu.memory_gb * 1e9 * utilization


# --8<-- [start:plan]
@dataclass(frozen=True)
class RlPlan:
    train_gpu: str
    rollout_gpu: str
    usd: float  # 一轮 RL 迭代的成本


def rl_iteration_cost(
    cfg: ModelConfig,
    train_tokens: int,
    rollout_tokens: int,
    gpus: list[GpuSpec],
    usd_per_hour: dict[str, float],
    microbatch: int = 16384,
    batch: int = 64,
    context: int = 2048,
) -> list[RlPlan]:
    """所有 (训练卡, rollout 卡) 组合一轮迭代的成本；对角线上是同构部署。"""
    train = {
        p.gpu: p for p in place(train_microbatch(cfg, microbatch), microbatch, gpus, usd_per_hour)
    }
    fitting = [g for g in gpus if rollout_fits(cfg, g, batch, context)]
    if not fitting:
        raise ValueError(f"batch {batch}、上下文 {context} 的权重加 KV 在所有候选卡上都放不下")
    roll = {p.gpu: p for p in place(decode(cfg, batch, context), batch, fitting, usd_per_hour)}
    plans = [
        RlPlan(
            t,
            r,
            (train[t].usd_per_million * train_tokens + roll[r].usd_per_million * rollout_tokens)
            / 1e6,
        )
        for t in train
        for r in roll
    ]
    return sorted(plans, key=lambda p: p.usd)
    # --8<-- [end:plan]
