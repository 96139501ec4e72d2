"""读取带出处的历史价格点（``data/price_points.yml``），并算出每条序列的年化下降倍数。"""

from dataclasses import dataclass
from datetime import date
from importlib import resources

import yaml

from .decline import annual_factor


@dataclass(frozen=True)
class PriceSeries:
    label: str
    source: str
    months: list[date]  # 每个点所在月份的月中
    prices: list[float]  # 美元 / 百万 token
    models: list[str]

    def years(self, i: int) -> float:
        """第 i 个点距第 0 个点的年数。"""
        return (self.months[i] - self.months[0]).days / 365.25

    def annual_factor(self) -> float:
        """首尾两点之间的年化下降倍数。"""
        return annual_factor(self.prices[0], self.prices[-1], self.years(len(self.prices) - 1))


def _mid_month(text: str) -> date:
    year, month = (int(part) for part in str(text).split("-"))
    return date(year, month, 15)


def load_price_series() -> list[PriceSeries]:
    raw = yaml.safe_load(
        resources.files(__package__).joinpath("data/price_points.yml").read_text("utf-8")
    )
    series = []
    for item in raw["series"]:
        points = item["points"]
        series.append(
            PriceSeries(
                label=item["label"],
                source=" ".join(item["source"].split()),
                months=[_mid_month(p["month"]) for p in points],
                prices=[float(p["usd_per_million"]) for p in points],
                models=[p["model"] for p in points],
            )
        )
    return series
