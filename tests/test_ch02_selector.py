"""第 2 章代码：决策树的每条规则都由可手算的不等式触发。"""

from __future__ import annotations

import subprocess
import sys

import pytest
from ch02_selector import (
    GPUS,
    Scenario,
    decode_floor_ms,
    expert_coverage,
    prefill_ms,
    recommend,
    weight_gb,
)
from ch02_selector.cli import main
from conftest import assert_clean_cli_error

H100 = GPUS["h100-sxm"]


def sections(s: Scenario) -> list[str]:
    return [a.section for a in recommend(s)]


def test_first_order_estimates_match_hand_calculation():
    assert weight_gb(70e9, 16) == pytest.approx(140)
    assert weight_gb(70e9, 4) == pytest.approx(35)
    # 140 GB / 3,350 GB/s = 41.8 ms
    assert decode_floor_ms(70e9, 16, 3350, 1) == pytest.approx(140 / 3350 * 1000)
    # 2 × 8e9 × 1000 FLOPs / (989e12 × 0.5) = 32.4 ms
    assert prefill_ms(8e9, 1000, 989, 1) == pytest.approx(2 * 8e9 * 1000 / (989e12 * 0.5) * 1000)


def test_70b_on_one_80gb_gpu_must_quantize_or_shard():
    advice = recommend(Scenario(params=70e9, gpu=H100))
    assert [a.level for a in advice[:2]] == ["必须", "必须"]
    assert {advice[0].section, advice[1].section} == {"7.3", "9.2"}
    assert "35.0 GB" in advice[0].reason  # 4 bit 方案
    assert "4 张" in advice[1].reason  # ceil(140 / (72 × 0.7)) = 3，向上取 2 的幂为 4


def test_small_model_on_big_gpu_needs_no_memory_fix():
    assert "7.3" not in sections(Scenario(params=8e9, gpu=H100))


def test_more_gpus_remove_the_memory_constraint():
    assert "9.2" not in sections(Scenario(params=70e9, gpu=H100, num_gpus=4))


def test_tight_tpot_target_below_decode_floor_is_flagged():
    advice = recommend(Scenario(params=70e9, gpu=H100, num_gpus=4, p99_tpot_ms=5))
    assert any(a.level == "必须" and "解码下限" in a.reason for a in advice)


def test_speculative_decoding_when_floor_uses_half_the_budget():
    # 8B BF16 在 H100 上解码下限 4.8 ms；目标 8 ms -> 超过一半
    assert "8.2" in sections(Scenario(params=8e9, gpu=H100, p99_tpot_ms=8))
    assert "8.2" not in sections(Scenario(params=8e9, gpu=H100, p99_tpot_ms=50))


def test_shared_prefix_triggers_prefix_caching_and_shortens_prefill():
    base = dict(params=70e9, gpu=H100, num_gpus=4, prompt_tokens=8000, p99_ttft_ms=300)
    assert "6.7" in sections(Scenario(**base))  # 8000 token 预填充约 566 ms
    cached = Scenario(**base, shared_prefix=0.8)
    assert "5.4" in sections(cached)
    assert "6.7" not in sections(cached)


def test_moe_uses_active_params_for_speed_and_total_for_memory():
    moe = Scenario(
        params=671e9, active_params=37e9, weight_bits=8, gpu=GPUS["h200-sxm"], num_gpus=8
    )
    assert "10.3" in sections(moe)
    assert decode_floor_ms(moe.active, 8, 4800, 8) < decode_floor_ms(moe.params, 8, 4800, 8)


def test_expert_coverage():
    assert expert_coverage(8, 256, 1) == pytest.approx(8 / 256)  # 单个 token：只读激活的专家
    assert expert_coverage(8, 256, 64) == pytest.approx(1 - (248 / 256) ** 64)  # ≈ 0.87
    assert expert_coverage(8, 256, 4096) > 0.999  # 大批量几乎全读
    with pytest.raises(ValueError):
        expert_coverage(9, 8, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"params": -1},
        {"params": 7e9, "active_params": 8e9},
        {"params": 7e9, "weight_bits": 3},
        {"params": 7e9, "shared_prefix": 1.0},
        {"params": 7e9, "p99_tpot_ms": 0},
    ],
)
def test_scenario_validation(kwargs):
    with pytest.raises(ValueError):
        Scenario(gpu=H100, **kwargs)


@pytest.mark.parametrize(
    "argv",
    [
        ["--params", "x"],
        ["--params", "7e9", "--active-params", "8e9"],
        ["--params", "7e9", "--num-gpus", "0"],
        ["--params", "7e9", "--shared-prefix", "1.5"],
        ["--params", "7e9", "--gpu", "tpu"],
        ["--params", "7e9", "--experts", "8"],
        ["--params", "7e9", "--experts", "8", "--experts-per-token", "2"],
        ["--params", "7e9", "--active-params", "1e9", "--experts", "8", "--experts-per-token", "9"],
        [],
    ],
)
def test_cli_rejects_bad_input_with_one_clear_error(argv, capsys):
    assert_clean_cli_error(main, argv, capsys)


def test_module_runs_issue_example():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ch02_selector",
            "--params",
            "70e9",
            "--gpu-mem-gb",
            "80",
            "--p99-latency-ms",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "权重量化" in proc.stdout and "7.3" in proc.stdout
