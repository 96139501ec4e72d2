"""在线引擎：把第 6 章的迭代级调度器和分页执行器接到 asyncio 上，边算边把 token 交给 HTTP 层。

第 6 章的 ``engine.run`` 回放一条已知的轨迹；线上的请求随时到、随时可能被客户端取消，所以这里
换成一个常驻的后台任务：有活就 ``schedule → execute → 分发 token``，没活就等。模型前向放到
线程里跑（``asyncio.to_thread``），事件循环在这期间照常收请求、回健康检查。调度器和块表只在
事件循环里改，所以取消请求不会和正在跑的前向抢同一份状态（见 ``_reap``）。

结构上对应 vLLM 0.33.0 的 ``AsyncLLM``（``vllm/v1/engine/async_llm.py``）：每个请求一个输出队列，
后台循环往里放；那里引擎核心在另一个进程，这里为了能读完放在同一个进程。
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import torch
from ch06_scheduling.executor import ModelExecutor
from ch06_scheduling.scheduler import Scheduler, SchedulerConfig, Sequence
from ch06_scheduling.trace import TraceRequest
from tinyllm.generate import sample
from tinyllm.model import TinyLLM

log = logging.getLogger("ch09_serving.engine")


class EngineError(RuntimeError):
    """引擎不能完成这个请求（前向出错、引擎已停）：HTTP 层回 500/503，不带调用栈。"""


class EngineUnavailable(EngineError):
    """引擎没在运行（未启动、已停止、连续失败后放弃）：HTTP 层回 503，换个副本重试。"""


class EngineOverloaded(EngineUnavailable):
    """等待队列已满：HTTP 层回 503 并带 Retry-After。"""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0  # 0 即贪心
    seed: int | None = None
    stop_token: int | None = None  # 通常是 EOS；None 表示生成满 max_tokens（ignore_eos）

    def __post_init__(self):
        if self.max_tokens < 1:
            raise ValueError("max_tokens 须 ≥ 1")
        if self.temperature < 0:
            raise ValueError("temperature 不能为负")


@dataclass(eq=False)
class ServeSequence(Sequence):
    """第 6 章的 Sequence 加上线上才有的东西：采样参数、输出队列、取消标记、时间戳。"""

    params: SamplingParams = field(default=None)
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    generator: torch.Generator | None = None
    aborted: bool = False
    arrived_at: float = 0.0  # time.monotonic()
    finish_reason: str | None = None

    @property
    def done(self) -> bool:
        if len(self.output) >= self.req.max_tokens:
            return True
        return self.params.stop_token is not None and self.output[-1:] == [self.params.stop_token]


class SamplingExecutor(ModelExecutor):
    """第 6 章的执行器只做贪心；线上按每个请求自己的温度和种子采样。"""

    def pick(self, seq: ServeSequence, logits: torch.Tensor) -> int:
        p = seq.params
        return int(sample(logits[None], p.temperature, None, seq.generator)[0])


@dataclass
class EngineHooks:
    """给指标用的回调：每个新 token、请求结束、每一步。默认什么都不做。"""

    on_token: Callable[[ServeSequence, float], None] = lambda seq, now: None
    on_finish: Callable[[ServeSequence, float], None] = lambda seq, now: None
    on_step: Callable[[int, float], None] = lambda num_tokens, seconds: None


# --8<-- [start:engine]
class AsyncEngine:
    def __init__(
        self,
        model: TinyLLM,
        config: SchedulerConfig,
        *,
        max_waiting: int = 256,
        max_consecutive_failures: int = 3,
        hooks: EngineHooks | None = None,
        wrap_executor: Callable[[object], object] | None = None,
    ):
        self.model, self.config = model, config
        self.scheduler = Scheduler(config)
        executor = SamplingExecutor(model, self.scheduler)
        self.executor = wrap_executor(executor) if wrap_executor else executor  # 9.9 节注入故障
        self.max_waiting, self.max_failures = max_waiting, max_consecutive_failures
        self.hooks = hooks or EngineHooks()
        self.failures = 0  # 连续失败的步数；成功一步清零
        self.dead: str | None = None  # 不为 None 时引擎已放弃：/health 回 503，等待重启
        self.step_started: float | None = None  # 正在跑的这一步何时开始（time.monotonic）
        self._ids, self._t0 = itertools.count(), time.monotonic()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="engine-loop")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail_all(EngineUnavailable("引擎已停止"))

    @property
    def alive(self) -> bool:
        return self.dead is None and self._task is not None and not self._task.done()

    async def generate(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[int]:
        """逐个产出新 token。调用方不再迭代（客户端断开、超时）时，请求在下一步之前被撤下。"""
        if not self.alive:
            raise EngineUnavailable(f"引擎不可用：{self.dead or '未启动'}")
        if len(self.scheduler.waiting) >= self.max_waiting:
            raise EngineOverloaded(f"等待队列已满（{self.max_waiting}）")
        now = time.monotonic()
        req = TraceRequest(next(self._ids), now - self._t0, list(prompt), params.max_tokens)
        gen = None if params.seed is None else torch.Generator().manual_seed(params.seed)
        seq = ServeSequence(req, params=params, generator=gen, arrived_at=now)
        self.scheduler.add(seq)
        self._wake.set()
        try:
            while True:
                item = await seq.queue.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            if seq.finish_reason is None:
                seq.aborted = True  # 真正撤下在引擎循环里做：此刻前向可能正在读它的块表
                self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._reap()
            if not self.scheduler.has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self.scheduler.schedule()
            if not batch.items:  # 校验保证单个请求放得下；走到这里说明配置有误
                self._finish(self.scheduler.waiting.pop(0), EngineError("请求无法调度"))
                continue
            t0 = time.perf_counter()
            for seq, _ in batch.items:
                if seq.first_scheduled is None:
                    seq.first_scheduled = time.monotonic() - self._t0  # 与 req.arrival 同一时间基准
            self.step_started = time.monotonic()
            try:
                sampled = await asyncio.to_thread(self.executor.execute, batch)
            except Exception as e:  # noqa: BLE001 —— 一步失败只影响这一批请求
                self._step_failed(batch, e)
                continue
            finally:
                self.step_started = None
            self.failures = 0
            now = time.monotonic()
            self.hooks.on_step(batch.num_tokens, time.perf_counter() - t0)
            for seq, n in batch.items:
                seq.num_computed += n
                if seq not in sampled or seq.aborted:
                    continue
                seq.output.append(sampled[seq])
                seq.first_token = now if seq.first_token is None else seq.first_token
                self.hooks.on_token(seq, now)
                seq.queue.put_nowait(sampled[seq])
                if seq.done:
                    reason = "length" if len(seq.output) >= seq.req.max_tokens else "stop"
                    self.scheduler.finish(seq)
                    self._finish(seq, None, reason)

    # --8<-- [end:engine]

    # --8<-- [start:failure]
    def _step_failed(self, batch, error: Exception) -> None:
        """前向抛异常：这一批的请求失败（KV 可能写了一半，不能接着用），其余请求不受影响。
        连续失败 ``max_consecutive_failures`` 步就认定引擎坏了：拒绝新请求，/health 变 503，
        让 Kubernetes 的存活探针重启容器——比带病运行、每个请求都失败好。"""
        self.failures += 1
        log.error("第 %d 次连续失败：%s: %s", self.failures, type(error).__name__, error)
        for seq, _ in batch.items:
            if seq in self.scheduler.running:
                self.scheduler.finish(seq)
            self._finish(seq, EngineError("推理出错，请重试"))
        if self.failures >= self.max_failures:
            self.dead = f"连续 {self.failures} 步前向失败（{type(error).__name__}）"
            self._fail_all(EngineUnavailable(f"引擎不可用：{self.dead}"))
        # --8<-- [end:failure]

    def _reap(self) -> None:
        """撤下已取消的请求，归还它们的 KV 块。"""
        for seq in [s for s in self.scheduler.running if s.aborted]:
            self.scheduler.finish(seq)
            self._finish(seq, None, "abort")
        for seq in [s for s in self.scheduler.waiting if s.aborted]:
            self.scheduler.waiting.remove(seq)  # 等待中的请求不占块（被抢占时已释放）
            self._finish(seq, None, "abort")

    def _finish(self, seq: ServeSequence, error: Exception | None, reason: str = "error") -> None:
        seq.finish_reason = reason
        seq.finished_at = time.monotonic()
        seq.queue.put_nowait(error)  # None 表示正常结束
        self.hooks.on_finish(seq, seq.finished_at)

    def _fail_all(self, error: Exception) -> None:
        for seq in [*self.scheduler.running, *self.scheduler.waiting]:
            self.scheduler.manager.free(id(seq))  # 没有块时什么也不做
            self._finish(seq, error)
        self.scheduler.running.clear()
        self.scheduler.waiting.clear()

    def stalled_for(self) -> float:
        """当前这一步已经跑了多久；没在跑为 0。前向卡死不会抛异常，只能靠它发现。"""
        return 0.0 if self.step_started is None else time.monotonic() - self.step_started

    def stats(self) -> dict[str, float]:
        m = self.scheduler.manager
        return {
            "running": len(self.scheduler.running),
            "waiting": len(self.scheduler.waiting),
            "kv_usage": 1 - m.num_free_blocks() / m.num_blocks,
            "preemptions": self.scheduler.num_preemptions,
        }
