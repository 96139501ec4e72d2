"""第 1 章配套代码：推理的单位经济学。

- ``cost``：每百万 token 的 GPU 成本，由 GPU 单价、吞吐和利用率算出；
- ``roi``：自建与调用 API 的盈亏平衡点，以及一次推理优化的回本周期；
- ``decline``：价格下降倍数与“每年 N 倍”之间的换算，以及下降曲线；
- ``human``：“人类当量”——一台推理服务一天产出的文字相当于多少人一天的产出；
- ``plot``：把下降曲线画成书中的图。

运行 ``python -m ch01_economics --help`` 查看所有子命令。
"""

from .cost import cost_per_million_tokens
from .decline import annual_factor, decline_per_year, project_prices
from .human import human_equivalents
from .roi import breakeven_tokens_per_month, optimization_payback

__all__ = [
    "annual_factor",
    "breakeven_tokens_per_month",
    "cost_per_million_tokens",
    "decline_per_year",
    "human_equivalents",
    "optimization_payback",
    "project_prices",
]
