"""第 9 章的成本工具与 RL 编排模拟：公式对手算结果，模拟的方向由模型本身得出。"""

from __future__ import annotations

import argparse
import math

import pytest
from ch09_serving import cost, rl
from ch09_serving.cost import (
    DIURNAL,
    MetricsWindow,
    RoiLedger,
    autoscaled_plan,
    counters_from_scrape,
    load_ledger,
    spot_vs_on_demand,
    static_plan,
    unit_costs,
    window_from_samples,
)
from ch09_serving.rl import RlConfig, compare, engine_makespan, rollout_lengths, simulate
from prometheus_client import CollectorRegistry, Counter, generate_latest

SCRAPE = """\
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 700.0
vllm:request_success_total{finished_reason="length",model_name="m"} 300.0
# HELP vllm:request_success_created Count of successfully processed requests.
# TYPE vllm:request_success_created gauge
vllm:request_success_created{finished_reason="stop",model_name="m"} 1.7e+09
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="m"} 3.0e+06
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m"} 1.0e+06
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
"""


def run_cli(argv: list[str], capsys) -> str:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cost.add_cli(sub)
    rl.add_cli(sub)
    args = parser.parse_args(argv)
    args.fn(args)
    return capsys.readouterr().out


# ---------- 实测单位成本 ----------


def test_unit_costs_match_hand_calculation():
    # 3600 s、$2/h：账单 $2；1000 个请求、1M 输出、3M 提示
    window = MetricsWindow(3600, 1000, 3_000_000, 1_000_000)
    c = unit_costs(window, 2.0)
    assert c.window_usd == pytest.approx(2.0)
    assert c.usd_per_request == pytest.approx(0.002)
    assert c.usd_per_million_output == pytest.approx(2.0)
    assert c.usd_per_million_total == pytest.approx(0.5)
    assert unit_costs(window, 2.0, num_gpus=4).usd_per_million_output == pytest.approx(8.0)


def test_idle_window_costs_infinity_per_unit():
    c = unit_costs(MetricsWindow(600, 0, 0, 0), 3.0)
    assert c.window_usd == pytest.approx(0.5)
    assert math.isinf(c.usd_per_request) and math.isinf(c.usd_per_million_output)


def test_window_from_samples_takes_counter_deltas():
    before = {cost.REQUESTS: 10, cost.PROMPT_TOKENS: 1000, cost.GENERATION_TOKENS: 500}
    after = {cost.REQUESTS: 30, cost.PROMPT_TOKENS: 5000, cost.GENERATION_TOKENS: 2500}
    assert window_from_samples(before, after, 60) == MetricsWindow(60, 20, 4000, 2000)


def test_counter_reset_and_missing_counter_raise():
    before = {cost.REQUESTS: 10, cost.PROMPT_TOKENS: 1000, cost.GENERATION_TOKENS: 500}
    reset = {cost.REQUESTS: 2, cost.PROMPT_TOKENS: 50, cost.GENERATION_TOKENS: 20}
    with pytest.raises(ValueError, match="重启"):
        window_from_samples(before, reset, 60)
    with pytest.raises(ValueError, match="缺少"):
        window_from_samples({}, reset, 60)


@pytest.mark.parametrize("args", [(0, 1, 1, 1), (60, -1, 1, 1), (60, 1, math.nan, 1)])
def test_metrics_window_rejects_bad_values(args):
    with pytest.raises(ValueError):
        MetricsWindow(*args)


def test_scrape_sums_labels_and_ignores_created():
    totals = counters_from_scrape(SCRAPE)
    assert totals == {
        cost.REQUESTS: 1000.0,
        cost.PROMPT_TOKENS: 3e6,
        cost.GENERATION_TOKENS: 1e6,
    }
    with pytest.raises(ValueError, match="/metrics"):
        counters_from_scrape("# TYPE up gauge\nup 1\n")


def test_scrape_of_prometheus_client_output():
    # prometheus-client 导出计数器时自动加 _total，并附带 _created 样本
    registry = CollectorRegistry()
    for name, value in [("request_success", 7), ("prompt_tokens", 70), ("generation_tokens", 35)]:
        Counter(f"vllm:{name}", "doc", ["model_name"], registry=registry).labels("m").inc(value)
    totals = counters_from_scrape(generate_latest(registry).decode())
    assert totals == {cost.REQUESTS: 7, cost.PROMPT_TOKENS: 70, cost.GENERATION_TOKENS: 35}


def test_cost_cli_from_two_scrapes(tmp_path, capsys):
    before = tmp_path / "before.prom"
    after = tmp_path / "after.prom"
    before.write_text(SCRAPE.replace("700.0", "0").replace("300.0", "0").replace("e+06", "e+00"))
    after.write_text(SCRAPE)
    argv = ["cost", "--hourly-usd", "2", "--seconds", "3600"]
    out = run_cli([*argv, "--metrics-before", str(before), "--metrics-after", str(after)], capsys)
    # 输出 1e6 - 1 个 token，$2 → 每百万约 $2.000
    assert "| 每请求 | $0.00200 |" in out and "| 每百万输出 token | $2.000 |" in out
    explicit = ["--requests", "1000", "--prompt-tokens", "3000000", "--generation-tokens", "1e6"]
    assert "| 每百万 token（提示 + 输出） | $0.500 |" in run_cli([*argv, *explicit], capsys)
    with pytest.raises(ValueError):
        run_cli(argv, capsys)


# ---------- Spot vs 按需 ----------


def test_spot_effective_price_matches_hand_calculation():
    # 每天 4 次 × 15 分钟 = 1 小时白付：有效时间 23/24
    r = spot_vs_on_demand(3.0, 1.2, 4, 15)
    assert r.useful_fraction == pytest.approx(23 / 24)
    assert r.spot_usd_per_useful_hour == pytest.approx(1.2 * 24 / 23)
    assert r.on_demand_usd_per_useful_hour == 3.0
    assert r.breakeven_interruptions_per_day == pytest.approx(0.6 * 24 * 60 / 15)


@pytest.mark.parametrize(
    "prices", [(3.0, 1.2, 15, 24), (2.0, 0.5, 30, 24), (4.0, 3.9, 5, 8), (1.0, 0.2, 60, 12)]
)
def test_at_breakeven_spot_costs_the_same(prices):
    on_demand, spot, restart, hours = prices
    k = spot_vs_on_demand(on_demand, spot, 0, restart, hours).breakeven_interruptions_per_day
    r = spot_vs_on_demand(on_demand, spot, k, restart, hours)
    assert r.spot_usd_per_useful_hour == pytest.approx(r.on_demand_usd_per_useful_hour)
    cheaper = spot_vs_on_demand(on_demand, spot, k * 0.9, restart, hours)
    assert cheaper.spot_usd_per_useful_hour < on_demand


def test_spot_edge_cases():
    assert spot_vs_on_demand(2.0, 2.5, 0, 10).breakeven_interruptions_per_day == 0
    with pytest.raises(ValueError):
        spot_vs_on_demand(3.0, 1.0, 100, 15)  # 25 小时的重启，一天塞不下
    with pytest.raises(ValueError):
        spot_vs_on_demand(3.0, 1.0, -1, 15)
    with pytest.raises(ValueError):
        spot_vs_on_demand(3.0, 1.0, 1, 15, hours_per_day=25)


# ---------- 自动扩缩容 ----------


def test_diurnal_static_vs_autoscaled():
    assert len(DIURNAL) == 24
    static = static_plan(DIURNAL, 4, 2.0)
    auto = autoscaled_plan(DIURNAL, 4, 2.0)
    assert static.replicas == (5,) * 24 and static.served_fraction == 1.0
    assert static.replica_hours == 120 and static.cost_usd == pytest.approx(240)
    assert auto.replica_hours < static.replica_hours
    assert auto.cost_usd == pytest.approx(auto.replica_hours * 2.0)
    assert 0.9 < auto.served_fraction < 1.0  # 冷启动丢掉了一点
    assert autoscaled_plan(DIURNAL, 4, 2.0, cold_start_minutes=0).served_fraction == 1.0


def test_autoscaled_cold_start_hand_calculation():
    # 0 点 1 副本（昨天 23 点是 3 个，不用启动），1 点新起 2 个、各丢半小时：
    # 可用 3 - 2 × 0.5 = 2，接住 2/3；总满足率 (1 + 2) / (1 + 3)
    plan = autoscaled_plan([1, 3], 1, 1.0, cold_start_minutes=30)
    assert plan.replicas == (1, 3)
    assert plan.served_fraction == pytest.approx(0.75)


def test_autoscaled_clamps_to_min_and_max():
    plan = autoscaled_plan(DIURNAL, 4, 2.0, min_replicas=2, max_replicas=4, cold_start_minutes=0)
    assert min(plan.replicas) == 2 and max(plan.replicas) == 4
    assert plan.served_fraction < 1.0
    headroom = autoscaled_plan(DIURNAL, 4, 2.0, target_utilization=0.8)
    assert headroom.replica_hours > autoscaled_plan(DIURNAL, 4, 2.0).replica_hours


@pytest.mark.parametrize(
    "kwargs",
    [
        {"demand": []},
        {"demand": [1, -1]},
        {"capacity_per_replica": 0},
        {"min_replicas": 3, "max_replicas": 2},
        {"cold_start_minutes": 61},
        {"target_utilization": 1.5},
    ],
)
def test_autoscaled_rejects_bad_input(kwargs):
    args = {"demand": DIURNAL, "capacity_per_replica": 4, "replica_hourly_usd": 2.0, **kwargs}
    with pytest.raises(ValueError):
        autoscaled_plan(**args)


# ---------- ROI 台账 ----------


def example_ledger() -> RoiLedger:
    ledger = RoiLedger()
    for row in cost.EXAMPLE_LEDGER:
        ledger.record(*row)
    return ledger


def test_ledger_entry_matches_hand_calculation():
    # $0.80 → $0.62 每百万，每月 200 亿 token：每月省 0.18 × 20000 = $3600
    p = example_ledger().entries[0].payback()
    assert p.monthly_saving_usd == pytest.approx(3600)
    assert p.payback_months == pytest.approx(6000 / 3600)
    assert p.roi_12_months == pytest.approx((12 * 3600 - 6000) / 6000)


def test_ledger_totals_equal_sums():
    ledger = example_ledger()
    paybacks = [e.payback() for e in ledger.entries]
    total = ledger.totals()
    saving = sum(p.monthly_saving_usd for p in paybacks)
    engineering = sum(e.engineering_usd for e in ledger.entries)
    assert ledger.engineering_usd == engineering
    assert total.monthly_saving_usd == pytest.approx(saving)
    assert total.payback_months == pytest.approx(engineering / saving)
    assert total.roi_12_months == pytest.approx((12 * saving - engineering) / engineering)


def test_ledger_rejects_bad_entries(tmp_path):
    ledger = RoiLedger()
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        ledger.record("x", "2025/03/01", 100, 1.0, 0.5, 1e9)
    with pytest.raises(ValueError, match="没有下降"):
        ledger.record("x", "2025-03-01", 100, 1.0, 1.0, 1e9)
    with pytest.raises(ValueError, match="空"):
        ledger.totals()
    assert ledger.entries == []


def test_load_ledger_csv(tmp_path):
    path = tmp_path / "ledger.csv"
    header = "name,date,engineering_usd,cost_per_million_before,cost_per_million_after,"
    path.write_text(header + "monthly_tokens\nFP8,2025-04-15,15000,0.62,0.41,2e10\n", "utf-8")
    ledger = load_ledger(path)
    assert ledger.entries[0].payback().monthly_saving_usd == pytest.approx(4200)
    with pytest.raises(ValueError):
        load_ledger(tmp_path / "missing.csv")


def test_cost_cli_tables(capsys):
    out = run_cli(["roi"], capsys)
    assert "示例台账" in out and "| 累计 | | 46,000 | | 9,000 |" in out
    out = run_cli(["spot", *"--on-demand-hourly 3 --spot-hourly 1.2".split(),
                   *"--interruptions-per-day 4 --restart-minutes 15".split()], capsys)  # fmt: skip
    assert "57.6" in out
    out = run_cli(["autoscale", "--capacity", "4", "--replica-hourly-usd", "2"], capsys)
    assert "| 静态（按峰值） | 120 | 240.00 | 100.00% |" in out


# ---------- RL 编排 ----------

TINY = RlConfig(
    num_gpus=2,
    rollout_gpus=1,
    batch_size=4,
    iterations=1,
    median_len=100,
    sigma=0,
    max_len=100,
    concurrency=2,
    decode_step_s=0.01,
    train_s_per_token=0.001,
)


def test_engine_makespan_is_continuous_batching():
    # 两个槽位：长的那条独占一个槽，三条短的在另一个槽里接连跑
    assert engine_makespan([5, 1, 1, 1], 2, 1.0) == 5.0
    assert engine_makespan([5, 1, 1, 1], 1, 1.0) == 8.0
    assert engine_makespan([3, 3, 3, 3], 2, 0.5) == 3.0


def test_rollout_lengths_shape_range_and_seed():
    lengths = rollout_lengths(RlConfig())
    assert lengths.shape == (10, 512)
    assert lengths.min() >= 1 and lengths.max() <= 16384
    assert (rollout_lengths(RlConfig()) == lengths).all()
    assert (rollout_lengths(RlConfig(seed=1)) != lengths).any()


def test_tiny_config_matches_hand_calculation():
    # 同置：每卡 2 条 × 100 token × 0.01 s = 1 s；训练 400 token × 0.001 / 2 卡 = 0.2 s
    co = simulate("colocated", TINY)
    assert co.wall_s_per_iteration == pytest.approx(1.2)
    assert co.idle_fraction == pytest.approx(0) and co.underfilled_fraction == pytest.approx(0)
    # 分离：1 卡 rollout 4 条占 2 个槽 = 2 s，1 卡训练 0.4 s；空闲 (0.4 + 2.0) / (2 × 2.4)
    st = simulate("disagg-static", TINY)
    assert st.wall_s_per_iteration == pytest.approx(2.4)
    assert st.idle_fraction == pytest.approx(0.5)
    assert st.samples_per_s == pytest.approx(4 / 2.4)


def test_async_overlaps_rollout_with_training_by_hand():
    two = RlConfig(**{**TINY.__dict__, "iterations": 2})
    # 同步：rollout 0–2，训练 2–2.4，rollout 2.4–4.4，训练 4.4–4.8
    assert simulate("disagg-static", two).wall_s_per_iteration == pytest.approx(4.8 / 2)
    # 异步：第二批 rollout 不等第一步训练，2–4；训练 4–4.4
    result = simulate("disagg-async", two)
    assert result.policy_lag == 1
    assert result.wall_s_per_iteration == pytest.approx(4.4 / 2)
    assert result.idle_fraction == pytest.approx((0.4 + 3.6) / 8.8)


@pytest.mark.parametrize("config", [RlConfig(), RlConfig(sigma=0.3, rollout_gpus=2), TINY])
def test_fractions_are_fractions(config):
    for r in compare(config).values():
        assert 0 <= r.idle_fraction <= 1 and 0 <= r.underfilled_fraction <= 1
        assert r.idle_fraction + r.underfilled_fraction <= 1 + 1e-12
        assert r.samples_per_s > 0


def test_deterministic_for_a_seed():
    assert compare(RlConfig(seed=3)) == compare(RlConfig(seed=3))
    assert compare(RlConfig(seed=3)) != compare(RlConfig(seed=4))


@pytest.mark.parametrize("rollout_gpus", [2, 4, 6, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_async_idles_less_than_static(rollout_gpus, seed):
    results = compare(RlConfig(rollout_gpus=rollout_gpus, seed=seed))
    static, asynchronous = results["disagg-static"], results["disagg-async"]
    assert asynchronous.idle_fraction < static.idle_fraction
    assert asynchronous.samples_per_s > static.samples_per_s


def test_colocated_idle_grows_with_heavier_tail():
    idle = [compare(RlConfig(sigma=s))["colocated"] for s in (0.0, 0.5, 1.0)]
    assert idle[0].idle_fraction == pytest.approx(0)  # 等长：每卡一样忙
    assert 0 < idle[1].idle_fraction < idle[2].idle_fraction
    assert idle[0].underfilled_fraction < idle[1].underfilled_fraction
    assert idle[1].underfilled_fraction < idle[2].underfilled_fraction


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_gpus": 1},
        {"rollout_gpus": 0},
        {"rollout_gpus": 8},
        {"batch_size": 4},
        {"iterations": 0},
        {"concurrency": 0},
        {"sigma": -0.1},
        {"max_len": 100},
        {"median_len": 0},
        {"decode_step_s": 0},
        {"train_s_per_token": -1},
    ],
)
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        RlConfig(**kwargs)


def test_unknown_strategy_raises():
    with pytest.raises(ValueError, match="colocated"):
        simulate("hybrid", RlConfig())


def test_rl_cli_table(capsys):
    out = run_cli(["rl", "--sigma", "0.5", "--iterations", "3"], capsys)
    assert out.count("\n| ") == 4 and "分离·异步 | 1 |" in out
    with pytest.raises(SystemExit):
        run_cli(["rl", "--num-gpus", "0"], capsys)
