"""自建还是调 API、优化值不值得做：两个最常被问到的 ROI 问题。"""

from dataclasses import dataclass


# --8<-- [start:breakeven]
def breakeven_tokens_per_month(
    api_usd_per_million: float,
    gpu_hourly_usd: float,
    num_gpus: int,
    tokens_per_second: float,
    *,
    hours_per_month: float = 730.0,
) -> tuple[float, float]:
    """自建实例与按量 API 的盈亏平衡月用量。

    自建实例整月租用（固定成本），API 按 token 计费（变动成本）。
    返回 ``(平衡点月 token 数, 实例满载一个月能产出的 token 数)``：
    月用量高于平衡点时自建更便宜——前提是平衡点不超过实例的产能，
    否则一台实例根本接不住这么多流量，要按多台重新算。
    """
    if min(api_usd_per_million, gpu_hourly_usd, tokens_per_second, hours_per_month) <= 0:
        raise ValueError("价格、吞吐和月小时数都必须为正数")
    if num_gpus < 1:
        raise ValueError("num_gpus 至少为 1")
    fixed_usd_per_month = gpu_hourly_usd * num_gpus * hours_per_month
    breakeven_tokens = fixed_usd_per_month / api_usd_per_million * 1_000_000
    capacity_tokens = tokens_per_second * 3600 * hours_per_month
    return breakeven_tokens, capacity_tokens


# --8<-- [end:breakeven]


# --8<-- [start:payback]
@dataclass(frozen=True)
class Payback:
    monthly_saving_usd: float  # 每月省下的 GPU 费用
    payback_months: float  # 多少个月收回工程投入
    roi_12_months: float  # 12 个月的投资回报率：(节省 - 投入) / 投入


def optimization_payback(monthly_gpu_usd: float, speedup: float, engineering_usd: float) -> Payback:
    """一次推理优化的回本周期。

    吞吐提升 ``speedup`` 倍，意味着同样的流量只需要 ``1/speedup`` 的 GPU，
    每月 GPU 账单从 ``monthly_gpu_usd`` 降到 ``monthly_gpu_usd / speedup``。
    """
    if monthly_gpu_usd <= 0 or engineering_usd <= 0:
        raise ValueError("月 GPU 费用和工程投入必须为正数")
    if speedup <= 1:
        raise ValueError("speedup 必须大于 1，否则没有节省")
    saving = monthly_gpu_usd * (1 - 1 / speedup)
    return Payback(
        monthly_saving_usd=saving,
        payback_months=engineering_usd / saving,
        roi_12_months=(12 * saving - engineering_usd) / engineering_usd,
    )


# --8<-- [end:payback]
