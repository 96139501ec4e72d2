"""第 1 章代码：每个公式对手算结果，CLI 对坏输入给出清楚的错误。"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ch01_economics import (
    annual_factor,
    breakeven_tokens_per_month,
    cost_per_million_tokens,
    decline_per_year,
    human_equivalents,
    optimization_payback,
    project_prices,
)
from ch01_economics.cli import main
from ch01_economics.human import cost_ratio, human_tokens_per_day
from ch01_economics.prices import load_price_series
from conftest import ROOT, assert_clean_cli_error


def test_cost_per_million_matches_hand_calculation():
    # 1 卡 $2/h，1000 tok/s 满载：每小时 3.6M token，$2 / 3.6 = $0.5556 每百万
    assert cost_per_million_tokens(2.0, 1000) == pytest.approx(2 / 3.6)
    # 8 卡、利用率 50%：成本 ×8 ×2
    assert cost_per_million_tokens(2.0, 1000, num_gpus=8, utilization=0.5) == pytest.approx(
        2 / 3.6 * 16
    )


def test_cost_falls_with_throughput():
    costs = [cost_per_million_tokens(2.0, tps) for tps in (100, 1_000, 10_000)]
    assert costs == sorted(costs, reverse=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gpu_hourly_usd": 0, "tokens_per_second": 1},
        {"gpu_hourly_usd": 1, "tokens_per_second": -1},
        {"gpu_hourly_usd": 1, "tokens_per_second": 1, "num_gpus": 0},
        {"gpu_hourly_usd": 1, "tokens_per_second": 1, "utilization": 1.5},
    ],
)
def test_cost_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        cost_per_million_tokens(**kwargs)


def test_breakeven():
    # 1 卡 $2/h × 730 h = $1,460/月；API $0.5/M -> 2,920M token/月
    breakeven, capacity = breakeven_tokens_per_month(0.5, 2.0, 1, 1000)
    assert breakeven == pytest.approx(2_920e6)
    assert capacity == pytest.approx(1000 * 3600 * 730)


def test_payback():
    result = optimization_payback(monthly_gpu_usd=100_000, speedup=2, engineering_usd=150_000)
    assert result.monthly_saving_usd == pytest.approx(50_000)
    assert result.payback_months == pytest.approx(3)
    assert result.roi_12_months == pytest.approx((600_000 - 150_000) / 150_000)
    with pytest.raises(ValueError):
        optimization_payback(1, 1.0, 1)


def test_decline_conversions():
    assert annual_factor(60, 0.06, 3) == pytest.approx(10)
    assert decline_per_year(10) == pytest.approx(0.9)
    assert project_prices(100, 10, 2) == pytest.approx([100, 10, 1])
    # 起止价格与年化倍数互为逆运算
    factor = annual_factor(20, 0.07, 1.92)
    assert 20 / factor**1.92 == pytest.approx(0.07)


def test_doubling_time():
    from ch01_economics.decline import doubling_time

    assert doubling_time(0.02) == pytest.approx(35.0, abs=0.05)
    # 翻倍时间内按复利增长恰好两倍
    assert (1.07) ** doubling_time(0.07) == pytest.approx(2)
    with pytest.raises(ValueError):
        doubling_time(0)


def test_human_equivalents():
    assert human_tokens_per_day(200, 8) == 96_000
    # 1 tok/s 全天 = 86,400 token；人一天 86,400 token -> 1 人
    assert human_equivalents(1.0, 86_400) == pytest.approx(1)
    # 时薪 $12、每分钟 200 token：人写 1M token 要 $1,000；模型 $1/M -> 1000 倍
    assert cost_ratio(12, 200, 1.0) == pytest.approx(1000)


def test_price_series_are_sourced_and_declining():
    series = load_price_series()
    assert len(series) >= 2
    for s in series:
        assert s.source.startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) and "http" in s.source
        assert s.prices == sorted(s.prices, reverse=True)
        assert s.annual_factor() > 1
    a16z = next(s for s in series if "a16z" in s.label)
    assert a16z.annual_factor() == pytest.approx(10, rel=0.01)


def test_figure_in_book_is_up_to_date(tmp_path):
    """书中的图就是这段代码生成的：重新生成后与仓库里的文件逐字节相同。"""
    from ch01_economics.plot import plot_price_decline

    fresh = plot_price_decline(tmp_path / "fig.svg")
    committed = ROOT / "docs/assets/figures/ch01-price-decline.svg"
    assert fresh.read_bytes() == committed.read_bytes(), "图已过时：运行 make figures"


def test_module_runs_demo():
    proc = subprocess.run(
        [sys.executable, "-m", "ch01_economics"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "人类当量" in proc.stdout and "每百万 token" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["cost", "--gpu-hourly-usd", "abc", "--tokens-per-sec", "1"],
        ["cost", "--gpu-hourly-usd", "2", "--tokens-per-sec", "-5"],
        ["cost", "--gpu-hourly-usd", "2", "--tokens-per-sec", "5", "--utilization", "2"],
        ["roi", "--monthly-gpu-usd", "1", "--speedup", "0.5", "--engineering-usd", "1"],
        ["human", "--hours", "30"],
        ["human", "--hourly-usd", "30"],
        ["growth", "-0.02"],
        ["decline", "--start-price", "nan", "--end-price", "1", "--years", "1"],
    ],
)
def test_cli_rejects_bad_input_with_one_clear_error(argv, capsys):
    assert_clean_cli_error(main, argv, capsys)


def test_plot_command_writes_file(tmp_path):
    out = tmp_path / "p.png"
    assert main(["plot", "--out", str(out)]) == 0
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
