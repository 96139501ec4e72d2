"""可回放的请求轨迹：泊松到达、长短混杂，固定种子；可以存成 JSON 再读回来。"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class TraceRequest:
    req_id: int
    arrival: float  # 秒
    prompt: list[int]  # token id
    max_tokens: int  # 本书的测量都按 ignore_eos 的方式生成满 max_tokens 个
    priority: int = 0  # 数值越小越优先（与 vLLM 的 priority 约定相同）

    def __post_init__(self):
        if not self.prompt or self.max_tokens < 1 or self.arrival < 0:
            raise ValueError(f"请求 {self.req_id}：提示不能为空，max_tokens ≥ 1，arrival ≥ 0")


# --8<-- [start:poisson]
def poisson_trace(
    num_requests: int,
    rate: float,
    seed: int = 0,
    prompt_range: tuple[int, int] = (16, 256),
    output_range: tuple[int, int] = (8, 128),
    vocab: int = 256,
    priorities: int = 1,
) -> list[TraceRequest]:
    """到达间隔服从均值 1/rate 的指数分布（即泊松过程）；长度在区间内对数均匀，短的多长的少。"""
    if num_requests < 1 or rate <= 0:
        raise ValueError("num_requests 须 ≥ 1，rate 须 > 0")
    rng, now, trace = random.Random(seed), 0.0, []

    def log_uniform(lo: int, hi: int) -> int:
        return int(round(lo * (hi / lo) ** rng.random()))

    for req_id in range(num_requests):
        now += rng.expovariate(rate)
        prompt = [rng.randrange(vocab) for _ in range(log_uniform(*prompt_range))]
        trace.append(
            TraceRequest(
                req_id, round(now, 6), prompt, log_uniform(*output_range), rng.randrange(priorities)
            )
        )
    return trace
    # --8<-- [end:poisson]


def save_trace(trace: list[TraceRequest], path: Path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in trace]) + "\n", "utf-8")


def load_trace(path: Path) -> list[TraceRequest]:
    try:
        return [TraceRequest(**r) for r in json.loads(Path(path).read_text("utf-8"))]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"读不了轨迹文件 {path}：{e}") from None
