"""第 2 章配套代码：技术选型决策树。

给定模型规模、GPU 和服务目标，``recommend`` 依次检查“放得下吗、跑得快吗、跑得省吗”，
输出该优先做的优化、理由（带算出来的数字）和对应章节。

运行 ``python -m ch02_selector --help`` 查看所有参数。
"""

from .estimates import decode_floor_ms, expert_coverage, prefill_ms, weight_gb
from .gpus import GPUS, GpuSpec
from .selector import Advice, Scenario, recommend

__all__ = [
    "GPUS",
    "Advice",
    "GpuSpec",
    "Scenario",
    "decode_floor_ms",
    "expert_coverage",
    "prefill_ms",
    "recommend",
    "weight_gb",
]
