"""每百万 token 成本：推理服务最基本的单位经济学。

一台推理实例的账单按小时计，而它卖出去的是 token。两者之间只隔着两个数：
实例满载时每秒产出多少 token（吞吐），以及一天里有多大比例的时间真的在满载（利用率）。
"""


# --8<-- [start:cost-per-million]
def cost_per_million_tokens(
    gpu_hourly_usd: float,
    tokens_per_second: float,
    *,
    num_gpus: int = 1,
    utilization: float = 1.0,
) -> float:
    """返回每生成一百万个 token 的 GPU 成本（美元）。

    Args:
        gpu_hourly_usd: 单卡每小时价格（美元），租用价或折旧后的自有成本。
        tokens_per_second: 整个实例满载时每秒产出的 token 数（所有并发请求之和）。
        num_gpus: 实例占用的 GPU 数，例如张量并行 TP=8 就是 8。
        utilization: 一天中实例处于满载的时间比例，取值 (0, 1]。

    Raises:
        ValueError: 任一参数不在合法范围内。
    """
    if gpu_hourly_usd <= 0 or tokens_per_second <= 0:
        raise ValueError("gpu_hourly_usd 和 tokens_per_second 必须为正数")
    if num_gpus < 1:
        raise ValueError("num_gpus 至少为 1")
    if not 0 < utilization <= 1:
        raise ValueError("utilization 必须在 (0, 1] 之间")
    usd_per_hour = gpu_hourly_usd * num_gpus
    tokens_per_hour = tokens_per_second * 3600 * utilization
    return usd_per_hour / tokens_per_hour * 1_000_000


# --8<-- [end:cost-per-million]
