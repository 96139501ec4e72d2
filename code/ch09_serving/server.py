"""OpenAI 兼容的 HTTP 服务：FastAPI + uvicorn，跑在 ``engine.AsyncEngine`` 上。

端点与 vLLM 0.33.0 的 ``vllm serve`` 对齐：``/v1/completions``、``/v1/chat/completions``（``stream``
为 true 时走 SSE）、``/v1/models``、``/health``、``/metrics``；另加 Kubernetes 就绪探针用的
``/ready``。一个请求依次经过：请求体大小 → 认证 → 限流 → 参数校验 → 排队 → 生成（有超时，
客户端断开即撤下）。每一关失败都回 OpenAI 格式的 JSON 错误和对应的 4xx/5xx，不回调用栈。
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import uvicorn
from ch06_scheduling.scheduler import SchedulerConfig
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tinyllm.model import TinyLLM
from tinyllm.tokenizer import ByteTokenizer

from . import protocol as P
from .engine import (
    AsyncEngine,
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    SamplingParams,
)
from .metrics import ServerMetrics
from .security import RateLimiter, authenticate

log = logging.getLogger("ch09_serving.server")
TOKENIZER = ByteTokenizer()
KNOWN_PATHS = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/ready",
               "/metrics"}  # fmt: skip
DEFAULT_SCHEDULER = SchedulerConfig(max_num_seqs=32, num_blocks=1024)  # 1024 块 × 16 = 16384 个槽


# --8<-- [start:settings]
@dataclass(frozen=True)
class ServerSettings:
    model_name: str = "tinyllm"
    api_keys: tuple[str, ...] = ()  # 空：不认证（只适合本机）
    rate_per_key: float = 50.0  # 令牌桶：每个密钥每秒补充的请求数
    burst_per_key: int = 100
    max_tokens_limit: int = 256  # 单个请求 max_tokens 的上限
    max_prompt_tokens: int = 384
    max_body_bytes: int = 64 * 1024
    request_timeout_s: float = 60.0
    max_waiting: int = 256  # 等待队列满了回 503
    stall_timeout_s: float = 30.0  # 一步前向超过这么久没结束，/health 就回 503

    def __post_init__(self):
        if min(self.rate_per_key, self.request_timeout_s, self.stall_timeout_s) <= 0:
            raise ValueError("rate_per_key、request_timeout_s、stall_timeout_s 须 > 0")
        if (
            min(
                self.burst_per_key,
                self.max_tokens_limit,
                self.max_prompt_tokens,
                self.max_body_bytes,
                self.max_waiting,
            )
            < 1
        ):
            raise ValueError("burst、各项上限和队列长度须 ≥ 1")
        # --8<-- [end:settings]


class HttpMetrics:
    """ASGI 中间件：按路径和状态码数响应。用纯 ASGI 写，不缓冲流式响应。"""

    def __init__(self, app, counter):
        self.app, self.counter = app, counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_and_count(message):
            if message["type"] == "http.response.start":
                path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"  # 防标签爆炸
                self.counter.labels(path, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, send_and_count)


def error_response(e: P.ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """先看 Content-Length，再边读边数：分块传输的大请求体也不会被整个读进内存。"""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise P.ApiError(413, f"请求体超过 {limit} 字节")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise P.ApiError(413, f"请求体超过 {limit} 字节")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise P.ApiError(400, f"请求体不是合法的 JSON：{e}") from None


async def until_disconnected(request: Request) -> None:
    """请求体读完之后，receive() 只会在客户端断开时返回 http.disconnect。"""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    model: TinyLLM,
    settings: ServerSettings = ServerSettings(),
    config: SchedulerConfig = DEFAULT_SCHEDULER,
    wrap_executor: Callable | None = None,
) -> FastAPI:
    limiter = RateLimiter(settings.rate_per_key, settings.burst_per_key)
    metrics = ServerMetrics(settings.model_name)
    max_len = model.config.max_position_embeddings
    state = {"draining": False}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = AsyncEngine(
            model, config, max_waiting=settings.max_waiting, wrap_executor=wrap_executor
        )
        engine.hooks = metrics.bind(engine)
        await engine.start()
        app.state.engine = engine
        yield
        await engine.stop()  # uvicorn 已等完在途请求（或超过了优雅退出的时限）

    app = FastAPI(title="ch09_serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.metrics, app.state.serving = settings, metrics, state

    @app.exception_handler(P.ApiError)
    async def api_error(_: Request, e: P.ApiError):
        return error_response(e)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, e: Exception):  # 兜底：记日志，不把调用栈发给客户端
        log.exception("未处理的异常")
        return error_response(P.ApiError(500, "服务器内部错误", "server_error"))

    # --8<-- [start:probes]
    @app.get("/health")
    async def health():
        """存活：引擎循环还在、没有放弃、这一步没有卡住。失败时 Kubernetes 重启容器。"""
        engine = app.state.engine
        stalled = engine.stalled_for()
        if engine.alive and stalled <= settings.stall_timeout_s:
            return {"status": "ok"}
        reason = engine.dead or f"一步前向已经跑了 {stalled:.0f} 秒"
        return JSONResponse({"status": "dead", "reason": reason}, status_code=503)

    @app.get("/ready")
    async def ready():
        """就绪：活着、没在退出、没卡住。失败时只是暂时不给它分流量。
        队列满不算不就绪：那时回 503 + Retry-After 更好——所有副本都满时，把它们全部摘掉
        只会让客户端连 Retry-After 都拿不到。"""
        engine = app.state.engine
        stalled = engine.stalled_for() > settings.stall_timeout_s  # 卡住了：别再往这里送请求
        if not engine.alive or state["draining"] or stalled:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready"}
        # --8<-- [end:probes]

    @app.get("/metrics")
    async def prometheus_metrics():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request):
        authenticate(request.headers.get("authorization"), settings.api_keys)
        return {
            "object": "list",
            "data": [
                {"id": settings.model_name, "object": "model", "owned_by": "llm-inference-book"}
            ],
        }

    # --8<-- [start:admission]
    async def admit(request: Request, kind: type[P._Common]):
        """大小 → 认证 → 限流 → 校验 → 长度检查；任何一关不过都抛 ApiError。"""
        if state["draining"]:
            raise P.ApiError(503, "服务正在退出，请重试", "server_error")
        raw = await read_body(request, settings.max_body_bytes)
        who = authenticate(request.headers.get("authorization"), settings.api_keys)
        limiter.check(who)
        req = P.parse(kind, parse_json(raw))
        if req.model not in (None, settings.model_name):
            raise P.ApiError(
                404, f"模型 {req.model!r} 不存在", param="model", code="model_not_found"
            )
        text = req.prompt if isinstance(req, P.CompletionRequest) else P.chat_prompt(req.messages)
        prompt = TOKENIZER.encode(text)
        limit = req.max_tokens if isinstance(req, P.CompletionRequest) else req.limit(16)
        if limit > settings.max_tokens_limit:
            raise P.ApiError(
                400, f"max_tokens 不能超过 {settings.max_tokens_limit}", param="max_tokens"
            )
        if len(prompt) > settings.max_prompt_tokens:
            raise P.ApiError(
                400,
                f"提示 {len(prompt)} 个 token，上限 {settings.max_prompt_tokens}",
                param="prompt",
            )
        if len(prompt) + limit > max_len:
            raise P.ApiError(
                400,
                f"提示 {len(prompt)} + max_tokens {limit} 超过模型的上下文长度 {max_len}",
                param="max_tokens",
            )
        stop = None if req.ignore_eos else TOKENIZER.eos_token_id
        params = SamplingParams(limit, req.temperature, req.seed, stop)
        return req, prompt, params
        # --8<-- [end:admission]

    async def first(tokens: AsyncIterator[int]) -> int | None:
        """取第一个 token；排队满、引擎坏了变成 503，让负载均衡换一个副本重试。"""
        try:
            return await anext(tokens)
        except StopAsyncIteration:
            return None
        except EngineOverloaded as e:
            metrics.rejected.inc()
            raise P.ApiError(503, str(e), "server_error", headers={"Retry-After": "1"}) from None
        except EngineUnavailable as e:
            raise P.ApiError(503, str(e), "server_error") from None
        except EngineError as e:
            raise P.ApiError(500, str(e), "server_error") from None

    # --8<-- [start:complete]
    async def complete(request: Request, chat: bool):
        req, prompt, params = await admit(request, P.ChatRequest if chat else P.CompletionRequest)
        rid = P.new_id("chatcmpl" if chat else "cmpl")
        tokens = app.state.engine.generate(prompt, params)  # 异步生成器：第一次迭代才入队
        deadline = time.monotonic() + settings.request_timeout_s

        async def collect() -> list[int]:
            head = await first(tokens)
            if req.stream or head is None:  # 流式：拿到首 token 就开始回 200，其余边生成边发
                return [] if head is None else [head]
            return [head, *[t async for t in tokens]]

        try:
            out = await until_done_or_gone(request, collect(), deadline)
        except BaseException:
            await tokens.aclose()  # 出错、超时、客户端已走：撤下请求，把 KV 块还给别人
            raise
        if req.stream:
            return StreamingResponse(sse(rid, req, prompt, params, out, tokens, chat, deadline),
                                     media_type="text/event-stream")  # fmt: skip
        finish = finish_reason(out, params)
        body = P.response_body(rid, settings.model_name, TOKENIZER.decode(out), finish, chat)
        return body | {"usage": P.usage(len(prompt), len(out))}
        # --8<-- [end:complete]

    async def until_done_or_gone(request: Request, work, deadline: float):
        """等 ``work`` 做完；超时回 504，客户端先断开就取消它。"""
        job = asyncio.create_task(work)
        watcher = asyncio.create_task(until_disconnected(request))
        timeout = max(0.0, deadline - time.monotonic())
        done, _ = await asyncio.wait({job, watcher}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        watcher.cancel()
        if job not in done:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            raise timeout_error(settings.request_timeout_s)
        try:
            return job.result()
        except EngineError as e:
            raise P.ApiError(500, str(e), "server_error") from None

    # --8<-- [start:sse]
    async def sse(rid, req, prompt, params, out, tokens: AsyncIterator[int], chat, deadline):
        """每个 token 一条 ``data: {...}``，最后 ``data: [DONE]``。中途出错也以 SSE 事件告知。"""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # 多字节汉字攒齐了才输出

        def event(obj) -> str:
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        def delta(token: int) -> str:
            return decoder.decode(bytes([token]) if token < 256 else b"")

        async with contextlib.aclosing(tokens):  # 客户端断开 → 本生成器被取消 → 请求被撤下
            try:
                async with asyncio.timeout_at(asyncio.get_running_loop().time()
                                              + deadline - time.monotonic()):  # fmt: skip
                    if out and (text := delta(out[0])):
                        yield event(
                            P.response_body(rid, settings.model_name, text, None, chat, stream=True)
                        )
                    async for token in tokens:
                        out.append(token)
                        if text := delta(token):
                            yield event(
                                P.response_body(
                                    rid, settings.model_name, text, None, chat, stream=True
                                )
                            )
            except TimeoutError:
                yield event(timeout_error(settings.request_timeout_s).body())
            except EngineError as e:
                yield event(P.ApiError(500, str(e), "server_error").body())
            else:
                tail = decoder.decode(b"", final=True)
                finish = finish_reason(out, params)
                yield event(
                    P.response_body(rid, settings.model_name, tail, finish, chat, stream=True)
                )
                if req.stream_options and req.stream_options.include_usage:
                    usage = P.response_body(rid, settings.model_name, "", None, chat, stream=True)
                    yield event(usage | {"choices": [], "usage": P.usage(len(prompt), len(out))})
        yield "data: [DONE]\n\n"
        # --8<-- [end:sse]

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    app.add_middleware(HttpMetrics, counter=metrics.http)
    return app


def timeout_error(seconds: float) -> P.ApiError:
    return P.ApiError(504, f"生成超过 {seconds:g} 秒", "timeout_error")


def finish_reason(out: list[int], params: SamplingParams) -> str:
    return "stop" if params.stop_token is not None and out[-1:] == [params.stop_token] else "length"


# --8<-- [start:serve]
class DrainingServer(uvicorn.Server):
    """收到 SIGTERM/SIGINT：先把 /ready 置为 503、拒绝新的生成请求，再交给 uvicorn 的优雅退出——
    停止接受新连接，等在途请求做完（最多 ``timeout_graceful_shutdown`` 秒），最后停引擎。"""

    def __init__(self, config: uvicorn.Config, serving: dict):
        super().__init__(config)
        self.serving = serving

    def handle_exit(self, sig: int, frame) -> None:
        self.serving["draining"] = True
        super().handle_exit(sig, frame)


def serve(
    app,
    host: str,
    port: int,
    drain_timeout_s: float = 30.0,
    on_listen: Callable[[int], None] = lambda port: None,
) -> None:
    """绑定端口（0 表示由系统挑一个空闲端口）、报告实际端口，然后一直服务到收到信号。"""
    sock = socket.create_server((host, port), reuse_port=False)
    on_listen(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=drain_timeout_s, access_log=False
    )
    DrainingServer(config, app.state.serving).run(sockets=[sock])
    # --8<-- [end:serve]
