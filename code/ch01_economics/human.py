"""“人类当量”：把推理服务的产出折算成人的产出。

这是量纲换算，不是智能的比较：它只回答“同样多的文字，机器和人各要多少时间、多少钱”。
结果对假设极其敏感，所以每个假设都是显式参数，书中 1.1 节给出它们的出处。
"""


# --8<-- [start:human-equivalent]
def human_tokens_per_day(tokens_per_minute: float = 200.0, hours: float = 8.0) -> float:
    """一个人一天输出的 token 数：每分钟 token 数 × 工作分钟数。"""
    if tokens_per_minute <= 0 or not 0 < hours <= 24:
        raise ValueError("tokens_per_minute 必须为正，hours 必须在 (0, 24] 之间")
    return tokens_per_minute * 60 * hours


def human_equivalents(
    machine_tokens_per_second: float,
    human_tokens_per_day: float,
    *,
    machine_hours_per_day: float = 24.0,
) -> float:
    """产量口径：一台推理实例一天的 token 产出，相当于多少个人一天的产出。"""
    if machine_tokens_per_second <= 0 or human_tokens_per_day <= 0:
        raise ValueError("吞吐和人的日产出都必须为正数")
    if not 0 < machine_hours_per_day <= 24:
        raise ValueError("machine_hours_per_day 必须在 (0, 24] 之间")
    return machine_tokens_per_second * 3600 * machine_hours_per_day / human_tokens_per_day


def cost_ratio(
    human_hourly_usd: float, human_tokens_per_minute: float, model_usd_per_million: float
) -> float:
    """成本口径：同样一百万个 token，人写的成本是模型价格的多少倍。"""
    if min(human_hourly_usd, human_tokens_per_minute, model_usd_per_million) <= 0:
        raise ValueError("时薪、每分钟 token 数和模型价格都必须为正数")
    human_usd_per_million = human_hourly_usd / (human_tokens_per_minute * 60) * 1_000_000
    return human_usd_per_million / model_usd_per_million


# --8<-- [end:human-equivalent]
