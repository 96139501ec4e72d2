"""上线之后的成本账：实测单位成本、Spot 与按需、自动扩缩容、优化的 ROI 台账。

第 1 章的公式用的是假设的吞吐与利用率；服务上线后，这些数可以从 ``/metrics`` 直接读出来：
两次抓取之间计数器涨了多少，就是这段时间真正卖出去的请求和 token，账单除以它们就是实测单位成本。
指标名沿用 vLLM（``vllm:request_success_total`` 等，见 ``vllm/v1/metrics/loggers.py``）。
Spot 与扩缩容两节的数字都是代入假设算出来的模型结果，不是测量值。
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ch01_economics.cli import count, fraction, hours_per_day, positive
from ch01_economics.cost import cost_per_million_tokens
from ch01_economics.roi import Payback, optimization_payback
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "vllm:request_success_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
COUNTERS = (REQUESTS, PROMPT_TOKENS, GENERATION_TOKENS)


# --8<-- [start:window]
@dataclass(frozen=True)
class MetricsWindow:
    seconds: float  # 窗口长度
    requests: float  # 窗口内结束的请求数（各 finished_reason 之和）
    prompt_tokens: float  # 窗口内处理的提示 token
    generation_tokens: float  # 窗口内生成的 token

    def __post_init__(self):
        counts = (self.requests, self.prompt_tokens, self.generation_tokens)
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"窗口长度必须是正数秒，收到 {self.seconds!r}")
        if not all(math.isfinite(c) and c >= 0 for c in counts):
            raise ValueError(f"请求数和 token 数必须是非负有限数，收到 {counts}")


def window_from_samples(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> MetricsWindow:
    """两次抓取的计数器值相减。计数器只增不减；变小说明中间进程重启、计数器归零了。"""
    deltas = {}
    for name in COUNTERS:
        if name not in before or name not in after:
            raise ValueError(f"缺少计数器 {name}：两次抓取都要包含它")
        if after[name] < before[name]:
            raise ValueError(
                f"计数器 {name} 从 {before[name]:g} 降到 {after[name]:g}：服务在窗口内重启过，"
                "这个窗口的差值不可用，请换一个不跨重启的窗口"
            )
        deltas[name] = after[name] - before[name]
    return MetricsWindow(
        seconds, deltas[REQUESTS], deltas[PROMPT_TOKENS], deltas[GENERATION_TOKENS]
    )


# --8<-- [end:window]


# --8<-- [start:scrape]
def counters_from_scrape(text: str) -> dict[str, float]:
    """从一次 Prometheus 文本抓取里取出三个计数器，各自对所有标签求和。

    prometheus-client 的解析器会把计数器族名末尾的 ``_total`` 去掉，样本名却保留它；
    所以按样本名匹配，顺带排除了同族的 ``_created`` 样本（那是创建时间戳，不是计数）。
    """
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in COUNTERS:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    missing = [name for name in COUNTERS if name not in totals]
    if missing:
        raise ValueError(f"抓取里没有 {', '.join(missing)}：确认抓的是 vLLM 服务的 /metrics")
    return totals


# --8<-- [end:scrape]


# --8<-- [start:unit-costs]
@dataclass(frozen=True)
class UnitCost:
    window_usd: float  # 窗口内付的 GPU 账单
    usd_per_request: float
    usd_per_million_output: float  # 每百万输出 token
    usd_per_million_total: float  # 每百万 token（提示 + 输出）


def unit_costs(window: MetricsWindow, hourly_usd: float, num_gpus: int = 1) -> UnitCost:
    """窗口内的账单摊到窗口内实际服务的流量上；空闲时段照样计费，所以利用率已经含在里面。

    窗口内没有流量时，对应的单位成本是无穷大：钱付了，什么也没卖出去。
    """

    def per_million(tokens: float) -> float:
        if tokens == 0:
            return math.inf
        return cost_per_million_tokens(hourly_usd, tokens / window.seconds, num_gpus=num_gpus)

    if hourly_usd <= 0 or num_gpus < 1:
        raise ValueError("hourly_usd 必须为正数，num_gpus 至少为 1")
    window_usd = hourly_usd * num_gpus * window.seconds / 3600
    return UnitCost(
        window_usd=window_usd,
        usd_per_request=window_usd / window.requests if window.requests else math.inf,
        usd_per_million_output=per_million(window.generation_tokens),
        usd_per_million_total=per_million(window.prompt_tokens + window.generation_tokens),
    )


# --8<-- [end:unit-costs]


# --8<-- [start:spot]
@dataclass(frozen=True)
class SpotComparison:
    on_demand_usd_per_useful_hour: float
    spot_usd_per_useful_hour: float
    useful_fraction: float  # Spot 实例付费时间里真正在服务的比例
    breakeven_interruptions_per_day: float  # 中断比这更频繁，Spot 就不再便宜


def spot_vs_on_demand(
    on_demand_hourly: float,
    spot_hourly: float,
    interruptions_per_day: float,
    restart_minutes: float,
    hours_per_day: float = 24.0,
) -> SpotComparison:
    """每次中断后，新实例要花 ``restart_minutes`` 拉镜像、加载权重、预热，这段时间照付钱却不出活。

    每天运行 ``hours_per_day`` 小时、其间中断 ``interruptions_per_day`` 次，有效时间比例是
    ``1 - 中断次数 × 重启分钟 / 60 / 运行小时``，Spot 每有效小时的价格 = 标价 / 这个比例。
    令它等于按需价格，解出盈亏平衡的中断频率。没算进来的：中断时正在跑的请求会失败。
    """
    if on_demand_hourly <= 0 or spot_hourly <= 0 or restart_minutes <= 0:
        raise ValueError("按需价格、Spot 价格和重启分钟数都必须为正数")
    if interruptions_per_day < 0 or not 0 < hours_per_day <= 24:
        raise ValueError("中断次数不能为负，每天运行小时数在 (0, 24] 之间")
    lost_hours = interruptions_per_day * restart_minutes / 60
    if lost_hours >= hours_per_day:
        raise ValueError(f"每天重启就要 {lost_hours:g} 小时，超过了运行时间，Spot 根本出不了活")
    useful = 1 - lost_hours / hours_per_day
    breakeven = max(0.0, 1 - spot_hourly / on_demand_hourly) * hours_per_day * 60 / restart_minutes
    return SpotComparison(on_demand_hourly, spot_hourly / useful, useful, breakeven)


# --8<-- [end:spot]


# --8<-- [start:plan]
# 建模用的日流量曲线（请求/秒，0 点到 23 点）：凌晨低谷、上午爬升、午后高峰、晚间回落。
# 这是编出来的示意曲线，不是任何服务的实测数据。
DIURNAL = (4, 3, 2, 2, 2, 3, 5, 8, 12, 16, 18, 19, 17, 18, 20, 20, 18, 16, 14, 13, 12, 10, 8, 6)


@dataclass(frozen=True)
class Plan:
    replica_hours: float
    cost_usd: float
    served_fraction: float  # 被接住的需求占总需求的比例
    replicas: tuple[int, ...]  # 每小时的副本数


def replicas_needed(demand: float, capacity: float) -> int:
    return math.ceil(demand / capacity - 1e-9)  # 容差：12 / 4 不该因浮点误差变成 4 个


def evaluate_plan(
    demand: Sequence[float],
    replicas: Sequence[int],
    capacity_per_replica: float,
    replica_hourly_usd: float,
    cold_start_minutes: float = 0.0,
) -> Plan:
    """按小时结算。一天首尾相接：0 点的副本数和前一天 23 点比。新增的副本整小时计费，
    但冷启动（拉起容器、加载权重、预热）的那几分钟接不了流量。小时内的流量按均匀处理。"""
    served, previous = 0.0, replicas[-1]
    for need, running in zip(demand, replicas, strict=True):
        starting = max(0, running - previous)
        usable = running - starting * cold_start_minutes / 60
        served += min(need, usable * capacity_per_replica)
        previous = running
    replica_hours = float(sum(replicas))
    return Plan(
        replica_hours, replica_hours * replica_hourly_usd, served / sum(demand), tuple(replicas)
    )


# --8<-- [end:plan]


def check_demand(
    demand: Sequence[float], capacity: float, hourly_usd: float, target: float
) -> None:
    if not demand or min(demand) < 0 or sum(demand) <= 0:
        raise ValueError("需求曲线不能为空、不能有负数，且总需求要大于 0")
    if capacity <= 0 or hourly_usd <= 0 or not 0 < target <= 1:
        raise ValueError("单副本容量和每小时价格必须为正数，目标利用率在 (0, 1] 之间")


# --8<-- [start:static-plan]
def static_plan(
    demand: Sequence[float],
    capacity_per_replica: float,
    replica_hourly_usd: float,
    *,
    target_utilization: float = 1.0,
) -> Plan:
    """全天按峰值备足副本：不用扩缩，也就没有冷启动损失。"""
    check_demand(demand, capacity_per_replica, replica_hourly_usd, target_utilization)
    peak = replicas_needed(max(demand), capacity_per_replica * target_utilization)
    return evaluate_plan(demand, [peak] * len(demand), capacity_per_replica, replica_hourly_usd)


# --8<-- [end:static-plan]


# --8<-- [start:autoscaled-plan]
def autoscaled_plan(
    demand: Sequence[float],
    capacity_per_replica: float,
    replica_hourly_usd: float,
    *,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    cold_start_minutes: float = 10.0,
    target_utilization: float = 1.0,
) -> Plan:
    """每小时开头按这一小时的需求定副本数（相当于按日曲线定时扩缩，预测是准的），
    夹在 [min_replicas, max_replicas] 之间。``target_utilization`` < 1 就是留余量。"""
    check_demand(demand, capacity_per_replica, replica_hourly_usd, target_utilization)
    if min_replicas < 0 or (max_replicas is not None and max_replicas < max(min_replicas, 1)):
        raise ValueError("min_replicas 不能为负，max_replicas 至少为 1 且不小于 min_replicas")
    if not 0 <= cold_start_minutes <= 60:
        raise ValueError("冷启动分钟数在 [0, 60] 之间")
    per_replica, replicas = capacity_per_replica * target_utilization, []
    for need in demand:
        wanted = max(min_replicas, replicas_needed(need, per_replica))
        replicas.append(wanted if max_replicas is None else min(max_replicas, wanted))
    return evaluate_plan(
        demand, replicas, capacity_per_replica, replica_hourly_usd, cold_start_minutes
    )


# --8<-- [end:autoscaled-plan]


# --8<-- [start:roi-ledger]
@dataclass(frozen=True)
class RoiEntry:
    name: str
    date: str  # YYYY-MM-DD，上线日期
    engineering_usd: float  # 工程投入
    cost_per_million_before: float  # 上线前实测的每百万 token 成本
    cost_per_million_after: float  # 上线后实测的每百万 token 成本
    monthly_tokens: float  # 每月 token 量

    def __post_init__(self):
        try:
            date.fromisoformat(self.date)
        except ValueError:
            raise ValueError(f"{self.name}：日期要写成 YYYY-MM-DD，收到 {self.date!r}") from None
        if min(self.engineering_usd, self.cost_per_million_after, self.monthly_tokens) <= 0:
            raise ValueError(f"{self.name}：工程投入、成本和月 token 量都必须为正数")
        if self.cost_per_million_after >= self.cost_per_million_before:
            raise ValueError(f"{self.name}：上线后的单位成本没有下降，算不出回本周期")

    def monthly_bills(self) -> tuple[float, float]:
        """（优化前，优化后）每月的 GPU 账单。"""
        millions = self.monthly_tokens / 1_000_000
        return self.cost_per_million_before * millions, self.cost_per_million_after * millions

    def payback(self) -> Payback:
        """单位成本从 before 降到 after，等价于吞吐提升 before / after 倍，套第 1 章的公式。"""
        before, after = self.monthly_bills()
        return optimization_payback(before, before / after, self.engineering_usd)


@dataclass
class RoiLedger:
    entries: list[RoiEntry] = field(default_factory=list)

    def record(
        self,
        name: str,
        date: str,
        engineering_usd: float,
        cost_per_million_before: float,
        cost_per_million_after: float,
        monthly_tokens: float,
    ) -> RoiEntry:
        entry = RoiEntry(
            name, date, engineering_usd, cost_per_million_before, cost_per_million_after,
            monthly_tokens,
        )  # fmt: skip
        self.entries.append(entry)
        return entry

    @property
    def engineering_usd(self) -> float:
        return sum(e.engineering_usd for e in self.entries)

    def totals(self) -> Payback:
        """累计：把整本账看成一次优化，月账单从各项优化前之和降到优化后之和，
        工程投入是各项之和；于是总的月节省正好等于各项月节省之和。"""
        if not self.entries:
            raise ValueError("台账是空的")
        before = sum(e.monthly_bills()[0] for e in self.entries)
        after = sum(e.monthly_bills()[1] for e in self.entries)
        return optimization_payback(before, before / after, self.engineering_usd)


# --8<-- [end:roi-ledger]


# --8<-- [start:load-ledger]
def load_ledger(path: Path) -> RoiLedger:
    """读 CSV 台账，表头就是 ``RoiEntry`` 的字段名：

    name,date,engineering_usd,cost_per_million_before,cost_per_million_after,monthly_tokens
    """
    numeric = (
        "engineering_usd",
        "cost_per_million_before",
        "cost_per_million_after",
        "monthly_tokens",
    )
    ledger = RoiLedger()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                ledger.record(row["name"], row["date"], **{k: float(row[k]) for k in numeric})
    except (OSError, KeyError, TypeError) as e:
        raise ValueError(f"读不了台账 {path}：{e}") from None
    return ledger


# --8<-- [end:load-ledger]


# 示例台账：三次优化，数字是假设的，用来演示怎么记账，不是实测。
EXAMPLE_LEDGER = (
    ("前缀缓存 + 分块 prefill", "2025-03-01", 6_000, 0.80, 0.62, 20e9),
    ("FP8 量化", "2025-04-15", 15_000, 0.62, 0.41, 20e9),
    ("推测解码", "2025-06-01", 25_000, 0.41, 0.35, 20e9),
)


def nonnegative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"需要一个数字，收到 {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"需要非负数，收到 {text!r}")
    return value


def usd(value: float, digits: int = 4) -> str:
    return "∞" if math.isinf(value) else f"${value:,.{digits}f}"


def cmd_cost(args: argparse.Namespace) -> None:
    if args.metrics_before or args.metrics_after:
        if not (args.metrics_before and args.metrics_after):
            raise ValueError("--metrics-before 和 --metrics-after 要一起给")
        before, after = (
            counters_from_scrape(Path(p).read_text("utf-8"))
            for p in (args.metrics_before, args.metrics_after)
        )
        window = window_from_samples(before, after, args.seconds)
    else:
        counts = (args.requests, args.prompt_tokens, args.generation_tokens)
        if any(c is None for c in counts):
            raise ValueError(
                "要么给 --requests/--prompt-tokens/--generation-tokens，要么给两次抓取"
            )
        window = MetricsWindow(args.seconds, *counts)
    cost = unit_costs(window, args.hourly_usd, args.num_gpus)
    print(
        f"窗口 {window.seconds:g} s：请求 {window.requests:,.0f}，"
        f"提示 {window.prompt_tokens:,.0f} token，输出 {window.generation_tokens:,.0f} token"
    )
    print(f"账单：{args.num_gpus} × GPU @ ${args.hourly_usd:g}/h → {usd(cost.window_usd, 2)}")
    print("| 口径 | 成本 |\n|---|---:|")
    print(f"| 每请求 | {usd(cost.usd_per_request, 5)} |")
    print(f"| 每百万输出 token | {usd(cost.usd_per_million_output, 3)} |")
    print(f"| 每百万 token（提示 + 输出） | {usd(cost.usd_per_million_total, 3)} |")


def cmd_spot(args: argparse.Namespace) -> None:
    r = spot_vs_on_demand(
        args.on_demand_hourly,
        args.spot_hourly,
        args.interruptions_per_day,
        args.restart_minutes,
        args.hours_per_day,
    )
    print(f"每天中断 {args.interruptions_per_day:g} 次 × 重启 {args.restart_minutes:g} 分钟")
    print("| 实例 | 标价 ($/h) | 有效时间 | 每有效小时 ($) |\n|---|---:|---:|---:|")
    print(
        f"| 按需 | {args.on_demand_hourly:.2f} | 100.0% | {r.on_demand_usd_per_useful_hour:.3f} |"
    )
    print(
        f"| Spot | {args.spot_hourly:.2f} | {r.useful_fraction:.1%} | "
        f"{r.spot_usd_per_useful_hour:.3f} |"
    )
    print(f"盈亏平衡：每天中断 {r.breakeven_interruptions_per_day:.1f} 次以上，Spot 就不再便宜")


def cmd_autoscale(args: argparse.Namespace) -> None:
    demand = args.demand or DIURNAL
    plans = {
        "静态（按峰值）": static_plan(
            demand,
            args.capacity,
            args.replica_hourly_usd,
            target_utilization=args.target_utilization,
        ),
        "自动扩缩": autoscaled_plan(
            demand,
            args.capacity,
            args.replica_hourly_usd,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            cold_start_minutes=args.cold_start_minutes,
            target_utilization=args.target_utilization,
        ),
    }
    print(f"需求曲线：{'DIURNAL（建模示例，非实测）' if not args.demand else '命令行给定'}")
    print("| 方案 | 副本·小时 | 日成本 ($) | 需求满足率 | 每小时副本数 |\n|---|---:|---:|---:|---|")
    for name, p in plans.items():
        hourly = " ".join(str(r) for r in p.replicas)
        cells = f"{p.replica_hours:g} | {p.cost_usd:,.2f} | {p.served_fraction:.2%}"
        print(f"| {name} | {cells} | {hourly} |")


def cmd_roi(args: argparse.Namespace) -> None:
    if args.ledger:
        ledger = load_ledger(args.ledger)
    else:
        ledger = RoiLedger()
        for row in EXAMPLE_LEDGER:
            ledger.record(*row)
        print("示例台账（假设数字，非实测）：")
    print("| 优化 | 上线 | 投入 ($) | $/1M 前→后 | 月节省 ($) | 回本 (月) | 12 个月 ROI |")
    print("|---|---|---:|---|---:|---:|---:|")
    for e in ledger.entries:
        p = e.payback()
        print(
            f"| {e.name} | {e.date} | {e.engineering_usd:,.0f} | "
            f"{e.cost_per_million_before:g}→{e.cost_per_million_after:g} | "
            f"{p.monthly_saving_usd:,.0f} | {p.payback_months:.1f} | {p.roi_12_months:.0%} |"
        )
    total = ledger.totals()
    print(
        f"| 累计 | | {ledger.engineering_usd:,.0f} | | {total.monthly_saving_usd:,.0f} | "
        f"{total.payback_months:.1f} | {total.roi_12_months:.0%} |"
    )


def add_cli(subparsers) -> None:
    """注册 cost / spot / autoscale / roi 四个子命令。"""
    p = subparsers.add_parser("cost", help="由 /metrics 计数器算实测单位成本")
    p.add_argument("--hourly-usd", type=positive, required=True, help="单卡每小时价格（美元）")
    p.add_argument("--num-gpus", type=count, default=1, help="实例占用的 GPU 数（默认 1）")
    p.add_argument("--seconds", type=positive, required=True, help="两次抓取之间的秒数")
    p.add_argument("--requests", type=nonnegative, help="窗口内结束的请求数")
    p.add_argument("--prompt-tokens", type=nonnegative, help="窗口内的提示 token 数")
    p.add_argument("--generation-tokens", type=nonnegative, help="窗口内生成的 token 数")
    p.add_argument("--metrics-before", type=Path, help="窗口开始时保存的 /metrics 文本")
    p.add_argument("--metrics-after", type=Path, help="窗口结束时保存的 /metrics 文本")
    p.set_defaults(fn=cmd_cost)

    p = subparsers.add_parser("spot", help="Spot 与按需实例：算上中断重启后的有效价格")
    p.add_argument("--on-demand-hourly", type=positive, required=True, help="按需实例每小时价格")
    p.add_argument("--spot-hourly", type=positive, required=True, help="Spot 实例每小时价格")
    p.add_argument(
        "--interruptions-per-day", type=nonnegative, required=True, help="每天被中断的次数"
    )
    p.add_argument(
        "--restart-minutes",
        type=positive,
        required=True,
        help="每次中断后新实例拉起、加载权重、预热的分钟数",
    )
    p.add_argument("--hours-per-day", type=hours_per_day, default=24.0, help="每天运行小时数")
    p.set_defaults(fn=cmd_spot)

    p = subparsers.add_parser("autoscale", help="按峰值静态部署 vs 按小时自动扩缩")
    p.add_argument(
        "--capacity", type=positive, required=True, help="单副本能接的流量（与需求同单位）"
    )
    p.add_argument("--replica-hourly-usd", type=positive, required=True, help="单副本每小时价格")
    p.add_argument(
        "--demand", type=nonnegative, nargs="+", help="每小时需求（默认 DIURNAL 建模曲线）"
    )
    p.add_argument("--min-replicas", type=count, default=1, help="最少副本数（默认 1）")
    p.add_argument("--max-replicas", type=count, help="最多副本数（默认不限）")
    p.add_argument(
        "--cold-start-minutes", type=nonnegative, default=10.0, help="新副本冷启动分钟数（默认 10）"
    )
    p.add_argument(
        "--target-utilization", type=fraction, default=1.0, help="按多高的利用率定副本数（默认 1）"
    )
    p.set_defaults(fn=cmd_autoscale)

    p = subparsers.add_parser("roi", help="优化台账：每项与累计的月节省、回本周期、12 个月 ROI")
    p.add_argument("--ledger", type=Path, help="台账 CSV（不给则用示例台账）")
    p.set_defaults(fn=cmd_roi)
