"""迭代级调度器：每次前向之前重新决定“这一步算哪些请求的哪些 token”。

思路来自 Orca（Yu et al., OSDI 2022）的 iteration-level scheduling，细节对照 vLLM 0.33.0 的
V1 调度器（vllm/v1/core/sched/scheduler.py）：先排正在运行的请求，再从等待队列补新请求；
每步的 token 总数不超过 ``max_num_batched_tokens``，同时运行的请求不超过 ``max_num_seqs``；
显存块不够时抢占（丢掉 KV，回到等待队列，之后重算），发生抢占的这一步不再接纳新请求。
vLLM 只有 fcfs 和 priority 两种策略；这里多一个 sjf，按已知的总长度排序，便于对比。
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ch05_kv_cache.paged import BlockManager, NoFreeBlocks

from .trace import TraceRequest

POLICIES = ("fcfs", "priority", "sjf")


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 256
    enable_chunked_prefill: bool = True
    policy: str = "fcfs"
    num_blocks: int = 512
    block_size: int = 16

    def __post_init__(self):
        if (
            min(self.max_num_seqs, self.max_num_batched_tokens, self.num_blocks, self.block_size)
            < 1
        ):
            raise ValueError(
                "max_num_seqs、max_num_batched_tokens、num_blocks、block_size 都须 ≥ 1"
            )
        if self.policy not in POLICIES:
            raise ValueError(f"policy 须是 {POLICIES} 之一，收到 {self.policy!r}")


@dataclass(eq=False)
class Sequence:
    req: TraceRequest
    output: list[int] = field(default_factory=list)
    num_computed: int = 0  # KV 已在缓存里的 token 数
    first_scheduled: float | None = None
    first_token: float | None = None
    finished_at: float | None = None
    preemptions: int = 0

    @property
    def tokens(self) -> list[int]:
        return self.req.prompt + self.output

    @property
    def remaining(self) -> int:
        """还没算 KV 的 token 数：prefill 时是提示剩下的部分，decode 时是 1。"""
        return len(self.req.prompt) + len(self.output) - self.num_computed

    @property
    def done(self) -> bool:
        return len(self.output) >= self.req.max_tokens


@dataclass
class Batch:
    items: list[tuple[Sequence, int]]  # (序列, 本步算几个 token)
    padded_tokens: int = 0  # 静态批处理补进去的 <pad> 数（也要算）

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.items) + self.padded_tokens


def sort_key(policy: str):
    if policy == "priority":
        return lambda s: (s.req.priority, s.req.arrival)
    if policy == "sjf":
        return lambda s: (len(s.req.prompt) + s.req.max_tokens, s.req.arrival)
    return lambda s: s.req.arrival


# --8<-- [start:schedule]
class Scheduler:
    """连续批处理：请求随时加入、随时离开，每步重新组批。"""

    def __init__(self, config: SchedulerConfig, manager: BlockManager | None = None):
        self.config = config
        self.manager = manager or BlockManager(config.num_blocks, config.block_size)
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Batch:
        budget, items, preempted = self.config.max_num_batched_tokens, [], False
        for seq in list(
            self.running
        ):  # 1. 正在运行的请求优先：decode 各 1 个，未完的 prefill 接着算
            if seq not in self.running:
                continue  # 本轮已被抢占
            n = min(seq.remaining, budget)
            if n == 0:
                continue
            while not self._try_allocate(seq, n):
                victim = self._pick_victim()
                self._preempt(victim)
                preempted = True
                for i, (s, m) in enumerate(items):  # 牺牲者若本步已排上，把预算还回来
                    if s is victim:
                        budget += m
                        del items[i]
                        break
                if victim is seq:
                    break
            else:
                items.append((seq, n))
                budget -= n
        self.waiting.sort(key=sort_key(self.config.policy))
        while self.waiting and budget > 0 and not preempted:  # 2. 有余量才从等待队列补
            if len(self.running) >= self.config.max_num_seqs:
                break
            seq = self.waiting[0]
            n = seq.remaining
            if n > budget and not self.config.enable_chunked_prefill:
                break  # 不分块：整段提示放不进本步预算，等下一步
            n = min(n, budget)
            if not self._try_allocate(seq, n):
                break  # 显存不够：新请求继续排队（不为它抢占别人）
            self.running.append(self.waiting.pop(0))
            items.append((seq, n))
            budget -= n
        return Batch(items)

    # --8<-- [start:try-allocate]
    def _try_allocate(self, seq: Sequence, n: int) -> bool:
        have = self.manager.num_tokens.get(id(seq), 0)
        try:
            self.manager.allocate_slots(id(seq), seq.num_computed + n - have)
        except NoFreeBlocks:
            return False
        return True
        # --8<-- [end:try-allocate]

    def _pick_victim(self) -> Sequence:
        """fcfs：最后加入运行队列的那个；priority/sjf：排序最靠后的那个。"""
        if self.config.policy == "fcfs":
            return self.running[-1]
        return max(self.running, key=sort_key(self.config.policy))

    def _preempt(self, seq: Sequence) -> None:
        """按重算方式抢占：释放它的全部块，已生成的 token 保留，回到等待队列重新 prefill。"""
        self.running.remove(seq)
        self.manager.free(id(seq))
        seq.num_computed = 0
        seq.preemptions += 1
        self.num_preemptions += 1
        self.waiting.insert(0, seq)
        # --8<-- [end:schedule]

    def finish(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.manager.free(id(seq))


# --8<-- [start:static]
class StaticScheduler(Scheduler):
    """静态批处理：凑一批、补齐到同样长度、整批跑完才接下一批。"""

    def schedule(self) -> Batch:
        if not self.running:  # 上一批全部结束才组新批
            self.waiting.sort(key=sort_key(self.config.policy))
            while self.waiting and len(self.running) < self.config.max_num_seqs:
                seq = self.waiting[0]
                total = len(seq.req.prompt) + seq.req.max_tokens  # 按最长可能长度一次留够
                if self.manager.blocks_needed(id(seq), total) > self.manager.num_free_blocks():
                    break
                self.manager.allocate_slots(id(seq), total)
                self.running.append(self.waiting.pop(0))
            if not self.running:
                return Batch([])
            lengths = [seq.remaining for seq in self.running]
            return Batch(
                [(s, n) for s, n in zip(self.running, lengths, strict=True)],
                sum(max(lengths) - n for n in lengths),
            )
        live = [s for s in self.running if not s.done]
        return Batch([(s, 1) for s in live], len(self.running) - len(live))  # 已完成的行还占着位置

    def finish(self, seq: Sequence) -> None:
        if all(s.done for s in self.running):  # 整批结束才一起释放
            for s in list(self.running):
                super().finish(s)
                # --8<-- [end:static]
