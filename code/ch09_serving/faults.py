"""故障注入（9.9 节）：包住执行器，让前向变慢、抛错，或者让整个进程像被 OOM Killer 杀掉一样退出。

真实的对应物：变慢——GPU 降频、邻居抢带宽、NVLink 出错后退化；抛错——``CUDA error: an illegal
memory access`` 之类的 Xid 错误，之后这个进程里的 CUDA 上下文通常就不能再用了；进程消失——
OOM、段错误、节点掉电。测试用它验证服务和网关的降级行为与 9.9 节写的一致。
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultPlan:
    delay_s: float = 0.0  # 每步额外睡多久：慢后端
    fail_from_step: int | None = None  # 从第几步起每步都抛错：坏掉的 GPU
    exit_at_step: int | None = None  # 第几步时进程直接退出：被杀的 worker

    def __post_init__(self):
        if self.delay_s < 0:
            raise ValueError("delay_s 不能为负")
        if min(self.fail_from_step or 1, self.exit_at_step or 1) < 1:
            raise ValueError("步数从 1 开始")

    @property
    def active(self) -> bool:
        return bool(self.delay_s or self.fail_from_step or self.exit_at_step)


# --8<-- [start:faulty]
class FaultyExecutor:
    def __init__(self, inner, plan: FaultPlan):
        self.inner, self.plan, self.steps = inner, plan, 0

    def execute(self, batch):
        self.steps += 1
        if self.plan.delay_s:
            time.sleep(self.plan.delay_s)
        if self.plan.exit_at_step == self.steps:
            os._exit(137)  # 不走任何清理，和 SIGKILL 一样突然
        if self.plan.fail_from_step is not None and self.steps >= self.plan.fail_from_step:
            raise RuntimeError("注入的故障：CUDA error: an illegal memory access was encountered")
        return self.inner.execute(batch)
        # --8<-- [end:faulty]
