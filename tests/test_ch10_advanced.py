"""第 10 章代码：分块注意力等于朴素注意力、读写量与公式一致；查表低比特矩阵乘等于反量化后矩阵乘。"""

from __future__ import annotations

import pytest
import torch
from ch10_advanced.cli import main
from ch10_advanced.flash import (
    Traffic,
    flash_attention,
    flash_traffic,
    naive_attention,
    naive_traffic,
)
from ch10_advanced.lut import dequantize, matmul_dequant, matmul_lut, op_counts, quantize
from conftest import assert_clean_cli_error


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n", "block_q", "block_k"), [(100, 32, 16), (64, 64, 64), (37, 8, 50)])
def test_flash_attention_equals_exact_attention(n, block_q, block_k, causal):
    torch.manual_seed(n)
    q, k, v = (torch.randn(2, 3, n, 16, dtype=torch.float64) for _ in range(3))
    t = Traffic()
    out = flash_attention(q, k, v, causal, block_q, block_k, t)
    torch.testing.assert_close(out, naive_attention(q, k, v, causal), rtol=0, atol=1e-12)
    heads = 2 * 3  # 公式按一个头数；实现按整个张量数
    want = flash_traffic(n, 16, block_q, block_k, causal)
    assert (t.reads, t.writes) == (heads * want.reads, heads * want.writes)


def test_flash_attention_float32_matches_torch_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 200, 32) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(flash_attention(q, k, v, True, 64, 48), ref, rtol=1e-5, atol=1e-5)


def test_flash_reads_less_than_naive_when_blocks_exceed_half_the_head_dim():
    """朴素约 4N² 次读写；分块约 2N²·D/B。B > D/2 时分块更少，B = D 时约为一半。"""
    n, d = 4096, 128
    naive = naive_traffic(n, d)
    for block, ratio in ((128, 2.0), (256, 4.0)):
        flash = flash_traffic(n, d, block, block)
        total = (naive.reads + naive.writes) / (flash.reads + flash.writes)
        assert total == pytest.approx(ratio, rel=0.05)  # 另有 Q、O 各读写一遍的 O(N·D) 项
    assert flash_traffic(n, d, 128, 128, causal=True).reads < flash_traffic(n, d, 128, 128).reads


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("g", [1, 2, 4, 8])
def test_lut_matmul_equals_dequantize_then_matmul(bits, g):
    torch.manual_seed(bits * 10 + g)
    w = torch.randn(24, 64, dtype=torch.float64)
    x = torch.randn(5, 64, dtype=torch.float64)
    qw = quantize(w, bits, group=16)
    torch.testing.assert_close(matmul_lut(x, qw, g), matmul_dequant(x, qw), rtol=0, atol=1e-10)


def test_quantization_error_shrinks_with_more_bits_and_ops_are_counted():
    torch.manual_seed(0)
    w = torch.randn(32, 128, dtype=torch.float64)
    errors = [(dequantize(quantize(w, b, 32)) - w).abs().max().item() for b in (1, 2, 4, 8)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.02
    ops = op_counts(1, 4096, 4096, bits=2, g=4)
    assert ops["lut_lookups"] == ops["dequant_macs"] // 2  # 2 比特、g=4：每 4 个乘加换 2 次查表
    assert ops["lut_table_adds"] == 1024 * 16


def test_bad_shapes_and_arguments_are_rejected(capsys):
    with pytest.raises(ValueError):
        quantize(torch.randn(4, 30), bits=2, group=16)
    with pytest.raises(ValueError):
        quantize(torch.randn(4, 32), bits=0)
    with pytest.raises(ValueError):
        matmul_lut(torch.randn(2, 32), quantize(torch.randn(4, 32), 2, 16), g=3)
    with pytest.raises(ValueError):
        flash_attention(*(torch.randn(1, 1, 4, 2) for _ in range(3)), block_q=0)
    assert_clean_cli_error(main, ["flash", "--block", "0"], capsys)
    with pytest.raises(SystemExit) as e:
        main(["lut", "--group", "30"])
    assert "须能被 group=30 整除" in str(e.value.code)
