"""价格下降的换算：“五年降 300 倍”和“每年降 N 倍”是不是一回事？

复利的直觉很容易出错。这里只有三个函数：由起止价格求年化倍数、
把年化倍数换成“每年下降百分之几”，以及按年化倍数外推价格。
"""

import math


# --8<-- [start:decline]
def annual_factor(start_price: float, end_price: float, years: float) -> float:
    """起止价格之间的年化下降倍数：每年价格变为上一年的 1/factor。"""
    if start_price <= 0 or end_price <= 0 or years <= 0:
        raise ValueError("价格和年数都必须为正数")
    return (start_price / end_price) ** (1 / years)


def decline_per_year(factor: float) -> float:
    """把年化倍数换成每年下降的比例：10 倍/年 = 每年下降 90%。"""
    if factor <= 0:
        raise ValueError("factor 必须为正数")
    return 1 - 1 / factor


def project_prices(start_price: float, factor: float, years: int) -> list[float]:
    """从 ``start_price`` 开始、每年除以 ``factor``，返回第 0..years 年的价格。"""
    if start_price <= 0 or factor <= 0 or years < 0:
        raise ValueError("start_price、factor 必须为正数，years 不能为负")
    return [start_price / factor**year for year in range(years + 1)]


def doubling_time(growth_rate: float) -> float:
    """年增长率 g 下，总量翻一番所需的年数：ln 2 / ln(1 + g)。"""
    if growth_rate <= 0:
        raise ValueError("growth_rate 必须为正数")
    return math.log(2) / math.log1p(growth_rate)


# --8<-- [end:decline]
