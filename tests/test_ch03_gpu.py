"""第 3 章代码：显存公式对照手算、规格表有出处、Roofline 分类方向正确、监控在无 GPU 时可用。"""

from __future__ import annotations

import dataclasses

import pytest
from ch03_gpu.cli import main
from ch03_gpu.roofline import Hardware, classify, decode, measure_overhead_us, prefill
from ch03_gpu.specs import load_gpus, markdown_table
from ch03_gpu.vram import (
    activation_bytes,
    estimate,
    kv_bytes_per_token,
    load_models,
    max_kv_tokens,
    weight_bytes,
)
from conftest import ROOT, assert_clean_cli_error
from tinyllm import PRESETS, TinyLLM

LLAMA8 = load_models()["llama-3-8b"][1]
LLAMA70 = load_models()["llama-3-70b"][1]


def test_llama3_parameter_counts_match_published_sizes():
    # 手算：嵌入 128256×4096 两份（不共享）
    # + 32 层 ×（注意力 4096×(4096+1024+1024+4096) + MLP 3×4096×14336 + 两个 RMSNorm 4096×2）
    # + 末尾 RMSNorm 4096
    per_layer = 4096 * (4096 + 1024 + 1024 + 4096) + 3 * 4096 * 14336 + 2 * 4096
    assert LLAMA8.num_parameters() == 2 * 128256 * 4096 + 32 * per_layer + 4096 == 8_030_261_248
    assert LLAMA70.num_parameters() == 70_553_706_496  # 官方称 70B（70.6B）


def test_weights_and_kv_cache_match_hand_calculation():
    assert weight_bytes(LLAMA8, "bf16") == 8_030_261_248 * 2
    assert weight_bytes(LLAMA8, "int4") == 8_030_261_248 / 2
    # 2（K 和 V）× 32 层 × 8 个 KV 头 × 128 维 × 2 字节 = 131072 字节 = 128 KiB
    assert kv_bytes_per_token(LLAMA8, "bf16") == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_bytes_per_token(LLAMA70, "bf16") == 2 * 80 * 8 * 128 * 2 == 327_680
    assert kv_bytes_per_token(LLAMA8, "fp8") == 65_536


@pytest.mark.parametrize("kv_heads, kib", [(32, 512), (8, 128), (1, 16)], ids=["MHA", "GQA", "MQA"])
def test_kv_per_token_scales_with_kv_heads(kv_heads, kib):
    cfg = dataclasses.replace(LLAMA8, num_key_value_heads=kv_heads)
    assert kv_bytes_per_token(cfg, "bf16") == kib * 1024


def test_activation_estimate_matches_formula():
    # 2048 token ×（2×4096 + (32+16)×128 + 3×14336）× 2 字节 + 1 条序列 × 128256 × 4 字节
    expect = 2048 * (2 * 4096 + 48 * 128 + 3 * 14336) * 2 + 128256 * 4
    assert activation_bytes(LLAMA8, 2048, 1, "bf16") == expect


def test_tensor_parallel_splits_weights_and_kv_but_not_overhead():
    one = estimate(LLAMA70, context=8192, batch=1)
    two = estimate(LLAMA70, context=8192, batch=1, tp=2)
    assert two.weights == pytest.approx(one.weights / 2)
    assert two.kv_cache == pytest.approx(one.kv_cache / 2)
    assert two.overhead == one.overhead
    # tp=16 超过 8 个 KV 头：每卡仍存 1 个完整 KV 头，KV 只能分到 1/8
    assert estimate(LLAMA70, 8192, 1, tp=16).kv_cache == pytest.approx(one.kv_cache / 8)
    with pytest.raises(ValueError):
        estimate(LLAMA70, 8192, 1, tp=3)


def test_llama3_70b_bf16_needs_more_than_two_h100_for_useful_kv_cache():
    assert max_kv_tokens(LLAMA70, 80) == 0
    assert 0 < max_kv_tokens(LLAMA70, 80, tp=2) < 2 * 8192  # 放得下权重，但装不下两条 8K 请求
    assert max_kv_tokens(LLAMA70, 80, tp=4) > 100_000
    assert max_kv_tokens(LLAMA70, 80, dtype="fp8", tp=2) > 100_000
    assert max_kv_tokens(LLAMA8, 80) > max_kv_tokens(LLAMA8, 24) > 0


def test_every_gpu_row_has_a_source_and_consistent_units():
    gpus = load_gpus()
    assert {"a100-80gb", "h100-sxm", "h200-sxm", "rtx-4090"} <= set(gpus)
    for g in gpus.values():
        assert g.source.count("http") >= 1, g.key
        if g.bf16_tflops and g.fp8_tflops:
            assert g.fp8_tflops == pytest.approx(2 * g.bf16_tflops, rel=0.01), g.key
    h100 = gpus["h100-sxm"]
    assert h100.ridge_flop_per_byte == pytest.approx(989.4e12 / 3350e9)
    table = markdown_table(list(gpus.values()))
    assert table.count("\n") == len(gpus) + 1 and "—" in table  # 缺数据显示为 —


def test_roofline_classifies_prefill_compute_and_decode_memory_on_h100():
    h100 = load_gpus()["h100-sxm"]
    hw = Hardware(h100.name, h100.bf16_tflops, h100.bandwidth_gbps, 5.0)
    assert classify(prefill(LLAMA8, 1, 1024), hw).bound == "compute"
    assert classify(decode(LLAMA8, 1, 1024), hw).bound == "memory"
    # 解码强度约 1 FLOP/B（每个 bf16 参数 2 字节、2 次浮点运算）；批量越大强度越高
    assert decode(LLAMA8, 1, 1).intensity == pytest.approx(1.0, rel=0.02)
    assert decode(LLAMA8, 64, 1024).intensity > 30 * decode(LLAMA8, 1, 1024).intensity


def test_tiny_model_on_slow_launch_hardware_is_overhead_bound():
    tiny = PRESETS["default"]
    hw = Hardware("假想的 GPU", peak_tflops=1000, bandwidth_gbps=3000, overhead_us=5)
    assert classify(decode(tiny, 1, 64), hw).bound == "overhead"


def test_measured_overhead_is_positive_and_small():
    assert 0 < measure_overhead_us(repeats=200) < 1000


def test_time_forward_runs_prefill_and_decode():
    from ch03_gpu.roofline import time_forward

    model = TinyLLM(PRESETS["test"]).eval()
    assert time_forward(model, 2, 16) > 0
    assert time_forward(model, 2, 1, context=16) > 0
    assert model.cache_len == 0  # 计时后清掉 KV Cache


def test_roofline_figure_in_book_matches_code(tmp_path):
    from ch03_gpu.plot import plot_roofline

    h100 = load_gpus()["h100-sxm"]
    hw = Hardware(h100.name, h100.bf16_tflops, h100.bandwidth_gbps, 5.0)
    # 与 `make figures` 相同的三个工作负载（cli.workloads 的默认参数：提示 1024、批量 64）
    verdicts = [
        classify(w, hw)
        for w in (prefill(LLAMA8, 1, 1024), decode(LLAMA8, 1, 1024), decode(LLAMA8, 64, 1024))
    ]
    fresh = plot_roofline(hw, verdicts, tmp_path / "r.svg").read_bytes()
    assert fresh == (ROOT / "docs/assets/figures/ch03-roofline-h100.svg").read_bytes()


def test_monitor_falls_back_to_cpu_without_nvidia_gpu(capsys):
    assert main(["monitor", "--count", "2", "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "CPU" in out and out.count("util ") == 2


def test_cli_rejects_bad_input(capsys):
    assert_clean_cli_error(main, ["vram", "--context", "0"], capsys)
    assert_clean_cli_error(main, ["vram", "--utilization", "1.5"], capsys)
    assert_clean_cli_error(main, ["vram", "--model", "llama-3-70b", "--tp", "3"], capsys)
    assert_clean_cli_error(main, ["specs", "--price", "h100-sxm=abc"], capsys)
    assert_clean_cli_error(main, ["vram", "--config", "/nonexistent/config.json"], capsys)


def test_spec_table_in_section_3_6_is_generated_from_the_data():
    import re

    page = (ROOT / "docs/ch03-gpu/03.6-gpu-specs.md").read_text("utf-8")
    page_rows = [re.sub(r"\[\^[^\]]+\]", "", line) for line in page.splitlines()]  # 去掉脚注标记
    for row in markdown_table(list(load_gpus().values())).splitlines():
        assert row in page_rows, f"3.6 节的规格表与 gpus.yml 不一致：{row}"
