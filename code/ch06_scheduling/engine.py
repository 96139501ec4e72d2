"""事件驱动的引擎循环：请求按轨迹到达，每个 worker 空闲就调度一步、执行、更新状态。

时间有两种：``cost`` 为 None 时用执行器的实测耗时（墙钟）；否则用 ``cost(batch)`` 的建模耗时。
一个 worker 就是普通部署；多个 worker 配合 ``role`` 就是 PD 分离（见 ``pd.py``）。
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .scheduler import Batch, Scheduler, Sequence
from .trace import TraceRequest


@dataclass(frozen=True)
class StepRecord:
    worker: str
    start: float
    end: float
    items: tuple[tuple[int, int, str], ...]  # (req_id, token 数, "prefill" 或 "decode")
    padded_tokens: int


@dataclass(eq=False)
class Worker:
    name: str
    scheduler: Scheduler
    executor: object
    cost: Callable[[Batch], float] | None = None
    role: str = "both"  # both / prefill / decode
    busy: bool = False


@dataclass
class RunResult:
    seqs: list[Sequence]
    steps: list[StepRecord] = field(default_factory=list)
    preemptions: int = 0


# --8<-- [start:loop]
def run(
    trace: list[TraceRequest],
    workers: list[Worker],
    route: Callable[[TraceRequest], Worker] | None = None,
    transfer_s: Callable[[Sequence], float] | None = None,
) -> RunResult:
    """route：新请求交给哪个 worker（默认按 req_id 轮转）；transfer_s：PD 分离时 KV 传输耗时。"""
    route = route or (lambda req: workers[req.req_id % len(workers)])
    decoders = [w for w in workers if w.role == "decode"]
    events, order, result = [], itertools.count(), RunResult([])

    def push(t: float, kind: str, *payload) -> None:
        heapq.heappush(events, (t, next(order), kind, payload))

    def kick(w: Worker, now: float) -> None:
        if w.busy or not w.scheduler.has_work():
            return
        batch = w.scheduler.schedule()
        if not batch.items:
            if not w.scheduler.running:
                seq, cfg = w.scheduler.waiting[0], w.scheduler.config
                if not cfg.enable_chunked_prefill and seq.remaining > cfg.max_num_batched_tokens:
                    why = f"提示 {seq.remaining} token 超过 max_num_batched_tokens"
                    why += "，又没开分块 prefill"
                else:
                    why = f"KV 超过了 {w.name} 的整个块池"
                raise ValueError(f"请求 {seq.req.req_id} 永远排不上：{why}")
            return
        phases = []
        for seq, n in batch.items:
            seq.first_scheduled = now if seq.first_scheduled is None else seq.first_scheduled
            phases.append(
                (
                    seq.req.req_id,
                    n,
                    "prefill" if seq.num_computed < len(seq.req.prompt) else "decode",
                )
            )
        t0 = time.perf_counter()
        sampled = w.executor.execute(batch)
        dt = w.cost(batch) if w.cost else time.perf_counter() - t0
        result.steps.append(StepRecord(w.name, now, now + dt, tuple(phases), batch.padded_tokens))
        w.busy = True
        push(now + dt, "step", w, batch, sampled)

    for req in trace:
        push(req.arrival, "arrival", req)
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrival":
            seq = Sequence(payload[0])
            result.seqs.append(seq)
            w = route(payload[0])
            w.scheduler.add(seq)
            kick(w, now)
        elif kind == "step":
            w, batch, sampled = payload
            w.busy = False
            for seq, n in batch.items:
                seq.num_computed += n
                if seq not in sampled:
                    continue
                seq.output.append(sampled[seq])
                if w.role == "prefill":  # 交给 decode：释放本地块，KV 传过去之后再继续
                    w.scheduler.finish(seq)
                    push(now + transfer_s(seq), "kv", seq)
                    continue
                if seq.first_token is None:
                    seq.first_token = now
                if seq.done:
                    seq.finished_at = now
                    w.scheduler.finish(seq)
            kick(w, now)
        else:  # "kv"：KV 到达 decode 端，首个 token 此刻才发给用户
            seq = payload[0]
            seq.first_token = now
            if seq.done:
                seq.finished_at = now
                continue
            w = min(decoders, key=lambda d: len(d.scheduler.running) + len(d.scheduler.waiting))
            w.scheduler.add(seq)
            kick(w, now)
    result.preemptions = sum(w.scheduler.num_preemptions for w in workers)
    return result
    # --8<-- [end:loop]


# --8<-- [start:metrics]
def summarize(result: RunResult) -> dict[str, float]:
    """TTFT、TPOT、排队时间（首次被调度 − 到达）、输出吞吐。时间单位秒。"""
    seqs = result.seqs
    ttft = np.array([s.first_token - s.req.arrival for s in seqs])
    tpot = np.array(
        [(s.finished_at - s.first_token) / (len(s.output) - 1) for s in seqs if len(s.output) > 1]
    )
    queue = np.array([s.first_scheduled - s.req.arrival for s in seqs])
    start, end = min(s.req.arrival for s in seqs), max(s.finished_at for s in seqs)
    return {
        "requests": len(seqs),
        "ttft_p50": float(np.percentile(ttft, 50)),
        "ttft_p90": float(np.percentile(ttft, 90)),
        "tpot_p50": float(np.percentile(tpot, 50)) if len(tpot) else 0.0,
        "tpot_p90": float(np.percentile(tpot, 90)) if len(tpot) else 0.0,
        "queue_mean": float(queue.mean()),
        "throughput": sum(len(s.output) for s in seqs) / (end - start),
        "preemptions": result.preemptions,
        "steps": len(result.steps),
        "padded_tokens": sum(s.padded_tokens for s in result.steps),
    }
    # --8<-- [end:metrics]
