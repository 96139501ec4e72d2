"""PD 分离 vs 混合部署：同一条轨迹、同样数量的 GPU，比较 TTFT 与 TPOT（建模）。

模型与 GPU 数据取自第 3 章（``ch03_gpu/data``），每步耗时用 Roofline 建模；KV 传输耗时 =
提示的 KV 字节数（第 5 章的公式）÷ 链路带宽 + 固定延迟。思路见 DistServe（Zhong et al.,
OSDI 2024，arXiv 2401.09670）与 Splitwise（Patel et al., ISCA 2024，arXiv 2311.18677）。
这是建模结果，不是实测：它回答“在这些假设下两种部署的取舍方向”，不回答“具体快多少”。
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ch03_gpu.cli import DEFAULT_GPU_OVERHEAD_US
from ch03_gpu.roofline import Hardware
from ch03_gpu.specs import load_gpus
from ch03_gpu.vram import kv_bytes_per_token, load_models, max_kv_tokens

from .engine import RunResult, Worker, run
from .executor import NullExecutor, RooflineCost
from .scheduler import Scheduler, SchedulerConfig, Sequence
from .trace import TraceRequest


@dataclass(frozen=True)
class Deployment:
    model: str = "llama-3-8b"
    gpu: str = "h100-sxm"
    link_gbps: float = 50.0  # KV 传输链路，GB/s（约等于 400 Gb/s 的 RDMA 网卡）
    link_latency_s: float = 0.002
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    block_size: int = 16


# --8<-- [start:transfer]
def kv_transfer_seconds(d: Deployment, prompt_tokens: int) -> float:
    """把 prompt_tokens 个 token 的 KV 从 prefill 实例搬到 decode 实例要多久。"""
    cfg = load_models()[d.model][1]
    return kv_bytes_per_token(cfg) * prompt_tokens / (d.link_gbps * 1e9) + d.link_latency_s
    # --8<-- [end:transfer]


def make_worker(d: Deployment, name: str, role: str, chunked: bool = True) -> Worker:
    _, cfg, _ = load_models()[d.model]
    gpu = load_gpus()[d.gpu]
    blocks = max_kv_tokens(cfg, gpu.memory_gb) // d.block_size
    sched = Scheduler(
        SchedulerConfig(
            d.max_num_seqs, d.max_num_batched_tokens, chunked, "fcfs", blocks, d.block_size
        )
    )
    hw = Hardware(gpu.name, gpu.bf16_tflops, gpu.bandwidth_gbps, DEFAULT_GPU_OVERHEAD_US)
    return Worker(name, sched, NullExecutor(), RooflineCost(cfg, hw), role)


# --8<-- [start:compare]
def colocated(trace: list[TraceRequest], d: Deployment, num_gpus: int) -> RunResult:
    """每张卡一个完整实例，prefill 与 decode 混在同一批里（分块 prefill）。"""
    workers = [make_worker(d, f"gpu{i}", "both") for i in range(num_gpus)]
    return run(trace, workers)


def disaggregated(
    trace: list[TraceRequest], d: Deployment, prefill_gpus: int, decode_gpus: int
) -> RunResult:
    """prefill 实例只做 prefill（整段提示，预算放宽到最长提示），decode 实例只做 decode。"""
    longest = max(len(r.prompt) for r in trace)
    pd = replace(d, max_num_batched_tokens=max(d.max_num_batched_tokens, longest))
    prefill = [make_worker(pd, f"prefill{i}", "prefill") for i in range(prefill_gpus)]
    decode = [make_worker(d, f"decode{i}", "decode") for i in range(decode_gpus)]

    def transfer(seq: Sequence) -> float:
        return kv_transfer_seconds(d, len(seq.req.prompt))

    return run(
        trace,
        prefill + decode,
        route=lambda r: prefill[r.req_id % len(prefill)],
        transfer_s=transfer,
    )
    # --8<-- [end:compare]
