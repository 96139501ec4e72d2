"""/metrics：用 prometheus-client 导出指标。

引擎相关的指标沿用 vLLM 0.33.0 的名字、类型和 ``model_name`` 标签
（``vllm/v1/metrics/loggers.py``），所以 ``deploy/`` 里为 vLLM 写的告警规则和 Grafana 面板，
对本章的演示服务同样适用；
HTTP 层的指标（按状态码计数、被限流的请求）vLLM 没有，用 ``book_`` 前缀以免混淆。
直方图的桶边界取 vLLM 0.33.0 相应指标的一个子集。
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .engine import AsyncEngine, EngineHooks, ServeSequence

TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


# --8<-- [start:metrics]
class ServerMetrics:
    def __init__(self, model_name: str):
        self.registry = r = CollectorRegistry()
        labels, self.labels = ["model_name", "engine"], {"model_name": model_name, "engine": "0"}

        def gauge(name, doc):
            return Gauge(name, doc, labels, registry=r).labels(**self.labels)

        def hist(name, doc, buckets):
            return Histogram(name, doc, labels, buckets=buckets, registry=r).labels(**self.labels)

        self.running = gauge("vllm:num_requests_running", "正在批里运行的请求数")
        self.waiting = gauge("vllm:num_requests_waiting", "等待调度的请求数（队列深度）")
        self.kv_usage = gauge("vllm:kv_cache_usage_perc", "KV 块池的占用比例，1 表示满")
        self.ttft = hist("vllm:time_to_first_token_seconds", "首 token 时延", TTFT_BUCKETS)
        self.e2e = hist("vllm:e2e_request_latency_seconds", "请求端到端时延", LATENCY_BUCKETS)
        self.queue = hist("vllm:request_queue_time_seconds", "到达到首次被调度", LATENCY_BUCKETS)
        self.itl = hist("vllm:inter_token_latency_seconds", "相邻两个 token 的间隔", ITL_BUCKETS)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "已处理的提示 token 数", labels, registry=r
        ).labels(**self.labels)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "已生成的 token 数", labels, registry=r
        ).labels(**self.labels)
        self.success = Counter(
            "vllm:request_success",
            "结束的请求数（按结束原因）",
            [*labels, "finished_reason"],
            registry=r,
        )
        for reason in ("stop", "length", "abort", "error"):  # 先建好：rate() 才看得到第一次出现
            self.success.labels(**self.labels, finished_reason=reason)
        self.rejected = Counter("vllm:admission_rejections", "等待队列满、被拒的请求数",
                                ["model_name", "reason"], registry=r).labels(
            model_name=model_name, reason="max_num_queued_reqs")  # fmt: skip
        self.preemptions = Counter("vllm:num_preemptions", "累计抢占次数", labels, registry=r)
        self.http = Counter(
            "book_http_responses", "HTTP 响应数（按路径和状态码）", ["path", "status"], registry=r
        )
        self._last_token: dict[int, float] = {}

    def bind(self, engine: AsyncEngine) -> EngineHooks:
        """把队列深度、KV 占用做成抓取时现算的值，并返回引擎要调用的回调。"""
        self.running.set_function(lambda: engine.stats()["running"])
        self.waiting.set_function(lambda: engine.stats()["waiting"])
        self.kv_usage.set_function(lambda: engine.stats()["kv_usage"])
        preempt = self.preemptions.labels(**self.labels)
        seen = [0]

        def on_step(num_tokens: int, seconds: float) -> None:
            total = engine.scheduler.num_preemptions
            preempt.inc(total - seen[0])
            seen[0] = total

        return EngineHooks(self.token, self.finish, on_step)

    def token(self, seq: ServeSequence, now: float) -> None:
        """每个 token 都计数（与 vLLM 一样按步计，后来被中止的请求已生成的也算）。"""
        self.generation_tokens.inc()
        last = self._last_token.get(id(seq))
        if last is None:
            self.ttft.observe(now - seq.arrived_at)
            self.prompt_tokens.inc(len(seq.req.prompt))  # 首个 token 出来，提示已经算完
        else:
            self.itl.observe(now - last)
        self._last_token[id(seq)] = now

    def finish(self, seq: ServeSequence, now: float) -> None:
        self._last_token.pop(id(seq), None)
        self.success.labels(**self.labels, finished_reason=seq.finish_reason).inc()
        if seq.finish_reason == "error":
            return
        self.e2e.observe(now - seq.arrived_at)
        if seq.first_scheduled is not None:
            self.queue.observe(seq.first_scheduled - seq.req.arrival)

    # --8<-- [end:metrics]
