"""负载生成器：固定并发的闭环压测，报告吞吐、TTFT 与端到端时延的 p50/p95/p99 和错误数。

闭环（closed loop）：每个虚拟用户发完一个请求、收到完整响应再发下一个，所以并发数恒定，
到达率由服务的快慢决定；这与 vLLM 的 ``vllm bench serve --max-concurrency`` 是同一种测法。
有两道保险：请求总数与总时长都有上限，目标地址只能是本机回环地址——这个工具是用来测
自己起的服务的，不是用来对别人的服务施压的。
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np

MAX_REQUESTS, MAX_DURATION_S, MAX_CONCURRENCY = 100_000, 3600.0, 1024


def require_loopback(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"不是 http(s) 地址：{url!r}")
    try:
        addr = ipaddress.ip_address(socket.gethostbyname(parts.hostname))
    except (OSError, ValueError):
        raise ValueError(f"解析不了主机名 {parts.hostname!r}") from None
    if not addr.is_loopback:
        raise ValueError(f"只允许压测本机回环地址（127.0.0.0/8、localhost），收到 {parts.hostname}")


# --8<-- [start:config]
@dataclass(frozen=True)
class LoadConfig:
    url: str  # 服务根地址，如 http://127.0.0.1:8000
    requests: int = 200  # 总请求数上限
    concurrency: int = 32  # 同时在途的请求数（虚拟用户数）
    duration_s: float = 120.0  # 总时长上限：到点后不再发新请求
    max_tokens: int = 16
    prompt: str = "KV Cache 的作用是"
    stream: bool = True
    chat: bool = False
    api_key: str | None = None
    timeout_s: float = 60.0

    def __post_init__(self):
        require_loopback(self.url)
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"requests 须在 1 到 {MAX_REQUESTS} 之间")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency 须在 1 到 {MAX_CONCURRENCY} 之间")
        if not 0 < self.duration_s <= MAX_DURATION_S or self.timeout_s <= 0:
            raise ValueError(f"duration_s 须在 (0, {MAX_DURATION_S:g}] 之间，timeout_s 须 > 0")
        if self.max_tokens < 1 or not self.prompt:
            raise ValueError("max_tokens 须 ≥ 1，prompt 不能为空")
        # --8<-- [end:config]


@dataclass
class Result:
    status: int  # HTTP 状态码；连接失败、超时记为 0
    latency: float
    ttft: float | None = None  # 只有流式请求有
    tokens: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


# --8<-- [start:one-request]
async def one_request(client: httpx.AsyncClient, cfg: LoadConfig) -> Result:
    """发一个请求并计时；TTFT 取第一个带文本的 SSE 事件到达的时刻。"""
    path = "/v1/chat/completions" if cfg.chat else "/v1/completions"
    body = {"max_tokens": cfg.max_tokens, "temperature": 0, "ignore_eos": True}
    if cfg.chat:
        body["messages"] = [{"role": "user", "content": cfg.prompt}]
    else:
        body["prompt"] = cfg.prompt
    if cfg.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", path, json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                return Result(resp.status_code, time.perf_counter() - t0, error=resp.text[:200])
            if not cfg.stream:
                usage = json.loads(await resp.aread())["usage"]
                return Result(200, time.perf_counter() - t0, tokens=usage["completion_tokens"])
            ttft, tokens, error = None, 0, ""
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    error = event["error"]["message"]
                elif event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
                elif ttft is None and event["choices"] and _text(event["choices"][0]):
                    ttft = time.perf_counter() - t0
            return Result(200, time.perf_counter() - t0, ttft, tokens, error)
    except httpx.HTTPError as e:
        return Result(0, time.perf_counter() - t0, error=f"{type(e).__name__}: {e}")
    # --8<-- [end:one-request]


def _text(choice: dict) -> str:
    return choice.get("text") or choice.get("delta", {}).get("content") or ""


# --8<-- [start:run]
async def run_load(cfg: LoadConfig, progress=sys.stderr) -> tuple[list[Result], float]:
    """``concurrency`` 个虚拟用户一起发，直到发满 ``requests`` 个或到了 ``duration_s``。"""
    results: list[Result] = []
    issued, start = 0, time.perf_counter()
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    limits = httpx.Limits(max_connections=cfg.concurrency)
    async with httpx.AsyncClient(
        base_url=cfg.url, headers=headers, limits=limits, timeout=cfg.timeout_s
    ) as client:

        async def user() -> None:
            nonlocal issued
            while issued < cfg.requests and time.perf_counter() - start < cfg.duration_s:
                issued += 1
                results.append(await one_request(client, cfg))

        async def report() -> None:
            while True:
                await asyncio.sleep(2.0)
                print(f"已完成 {len(results)}/{cfg.requests} 个请求", file=progress, flush=True)

        reporter = asyncio.create_task(report())
        await asyncio.gather(*(user() for _ in range(cfg.concurrency)))
        reporter.cancel()
    return results, time.perf_counter() - start
    # --8<-- [end:run]


# --8<-- [start:summary]
@dataclass
class Summary:
    requests: int
    errors: int
    wall_s: float
    req_per_s: float
    output_tok_per_s: float
    ttft_ms: dict[str, float] = field(default_factory=dict)  # p50/p95/p99
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors_by_status: dict[int, int] = field(default_factory=dict)


def summarize(results: list[Result], wall_s: float) -> Summary:
    ok = [r for r in results if r.ok]

    def pct(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {f"p{q}": float(np.percentile(values, q)) * 1e3 for q in (50, 95, 99)}

    by_status: dict[int, int] = {}
    for r in results:
        if not r.ok:
            by_status[r.status] = by_status.get(r.status, 0) + 1
    return Summary(
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=wall_s,
        req_per_s=len(ok) / wall_s,
        output_tok_per_s=sum(r.tokens for r in ok) / wall_s,
        ttft_ms=pct([r.ttft for r in ok if r.ttft is not None]),
        latency_ms=pct([r.latency for r in ok]),
        errors_by_status=by_status,
    )
    # --8<-- [end:summary]


def format_summary(s: Summary) -> str:
    lines = [
        f"请求 {s.requests} 个，错误 {s.errors} 个，用时 {s.wall_s:.1f} s",
        f"吞吐：{s.req_per_s:.1f} 请求/s，{s.output_tok_per_s:.0f} 输出 token/s",
    ]
    for name, d in (("TTFT", s.ttft_ms), ("端到端时延", s.latency_ms)):
        if d:
            lines.append(f"{name}（ms）：" + "，".join(f"{k} {v:.0f}" for k, v in d.items()))
    if s.errors_by_status:
        by_status = s.errors_by_status.items()
        lines.append("错误按状态码：" + "，".join(f"{k}: {v}" for k, v in by_status))
    return "\n".join(lines)
