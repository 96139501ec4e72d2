"""多副本网关（9.2.3、9.2.4、9.9 节）：负载均衡、主动健康检查、失败重试。

- 选副本：``round_robin`` 轮转；``least_outstanding`` 选在途请求最少的副本——副本变慢时，它手上
  积压的请求多，新请求自然少分给它。
- 主动健康检查：每隔 ``health_interval_s`` 访问各副本的 ``/ready``，不通或非 200 就摘掉，
  恢复后放回。
- 被动摘除与重试：转发时连不上、连接被重置、或副本回 500/503，就把这个请求换一个副本重发。
  非流式的补全请求没有副作用，重发是安全的；流式响应一旦开始往客户端写，就不能再换副本，
  只能让客户端看到中断（9.9 节）。
vLLM 生态里做这件事的有 vLLM production-stack 的 router、llm-d 的推理网关；这里只保留骨架。
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from . import protocol as P

log = logging.getLogger("ch09_serving.router")
POLICIES = ("round_robin", "least_outstanding")
RETRY_STATUS = (500, 502, 503, 504)
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "host"}


@dataclass(eq=False)
class Backend:
    url: str
    healthy: bool = True
    outstanding: int = 0  # 在途请求数
    sent: int = 0  # 累计分到的请求数


# --8<-- [start:pick]
class Router:
    def __init__(self, urls: list[str], policy: str = "least_outstanding", retries: int = 2):
        if not urls:
            raise ValueError("至少要有一个后端")
        if policy not in POLICIES:
            raise ValueError(f"policy 须是 {POLICIES} 之一，收到 {policy!r}")
        if retries < 0:
            raise ValueError("retries 不能为负")
        self.backends = [Backend(u.rstrip("/")) for u in urls]
        self.policy, self.retries = policy, retries
        self._rr = itertools.count()

    def pick(self, tried: set[Backend]) -> Backend | None:
        """在健康、且这个请求还没试过的副本里选一个；都不行返回 None。"""
        live = [b for b in self.backends if b.healthy and b not in tried]
        if not live:
            return None
        if self.policy == "round_robin":
            return live[next(self._rr) % len(live)]
        return min(live, key=lambda b: b.outstanding)
        # --8<-- [end:pick]


def create_router_app(
    router: Router, health_interval_s: float = 1.0, timeout_s: float = 60.0
) -> FastAPI:
    registry = CollectorRegistry()
    outcomes = Counter("book_router_requests", "网关转发结果", ["backend", "outcome"],
                       registry=registry)  # fmt: skip
    retried = Counter("book_router_retries", "换副本重发的次数", registry=registry)
    healthy = Gauge("book_router_healthy_backends", "健康的副本数", registry=registry)
    healthy.set_function(lambda: sum(b.healthy for b in router.backends))
    client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=1024))

    # --8<-- [start:health]
    async def probe(b: Backend) -> None:
        try:
            ok = (await client.get(f"{b.url}/ready", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok != b.healthy:
            log.warning("%s %s", b.url, "恢复" if ok else "摘除")
        b.healthy = ok

    async def check_health() -> None:
        while True:  # 各副本并发检查：一个卡住的副本不拖慢对其他副本的判断
            await asyncio.gather(*(probe(b) for b in router.backends))
            await asyncio.sleep(health_interval_s)
            # --8<-- [end:health]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(check_health())
        yield
        task.cancel()
        await client.aclose()

    app = FastAPI(title="ch09_serving router", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.router = router

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if any(b.healthy for b in router.backends):
            return {"status": "ready"}
        return JSONResponse({"status": "no healthy backend"}, status_code=503)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # --8<-- [start:forward]
    @app.post("/v1/{path:path}")
    async def forward(path: str, request: Request):
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        tried: set[Backend] = set()
        last = "没有健康的副本"
        for attempt in range(router.retries + 1):
            b = router.pick(tried)
            if b is None:
                break
            tried.add(b)
            retried.inc(attempt > 0)
            b.outstanding, b.sent = b.outstanding + 1, b.sent + 1
            resp = None
            try:
                req = client.build_request("POST", f"{b.url}/v1/{path}", content=body,
                                           headers=headers)  # fmt: skip
                resp = await client.send(req, stream=True)
                if not is_sse(resp):  # 非流式：整个读完才算成功，读到一半断了也能重试
                    await resp.aread()
            except (httpx.ReadTimeout, httpx.WriteTimeout):  # 慢不等于死：不摘除，也不重发
                b.outstanding -= 1
                outcomes.labels(b.url, "timeout").inc()
                return JSONResponse(P.ApiError(504, "副本响应超时", "timeout_error").body(),
                                    status_code=504)  # fmt: skip
            except httpx.TransportError as e:  # 连不上、连接超时、被重置：这个副本多半没了
                b.outstanding -= 1
                b.healthy, last = False, f"{type(e).__name__}"
                outcomes.labels(b.url, "connect_error").inc()
                continue
            finally:
                if resp is not None and not is_sse(resp):
                    await resp.aclose()
            others = attempt < router.retries and any(
                x.healthy and x not in tried for x in router.backends
            )
            if (
                resp.status_code in RETRY_STATUS and others
            ):  # 没有别的副本可换时原样转回（带 Retry-After）
                await resp.aclose()
                b.outstanding -= 1
                last = f"HTTP {resp.status_code}"
                outcomes.labels(b.url, f"retry_{resp.status_code}").inc()
                continue
            outcomes.labels(b.url, str(resp.status_code)).inc()
            return await relay(b, resp)
        err = P.ApiError(503, f"所有副本都失败了（{last}）", "server_error")
        return JSONResponse(err.body(), status_code=503, headers={"Retry-After": "1"})

    async def relay(b: Backend, resp: httpx.Response) -> Response:
        """把副本的响应原样转回去。流式响应边收边转，中途断了客户端会看到流被截断。"""
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
        if not is_sse(resp):  # 已在 forward 里读完并关闭
            b.outstanding -= 1
            return Response(resp.content, resp.status_code, out_headers)

        async def release() -> None:
            await resp.aclose()
            b.outstanding -= 1

        return Relay(resp.aiter_raw(), resp.status_code, out_headers, on_close=release)
        # --8<-- [end:forward]

    return app


class Relay(StreamingResponse):
    """转发流式响应；无论正常写完、中途断开，还是客户端在第一个字节之前就走了，都释放一次。"""

    def __init__(self, content, status_code, headers, on_close):
        super().__init__(content, status_code, headers)
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()


def is_sse(resp: httpx.Response) -> bool:
    return resp.headers.get("content-type", "").startswith("text/event-stream")
