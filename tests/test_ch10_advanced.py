"""第 10 章代码：分块注意力等于朴素注意力、读写量与公式一致；查表低比特矩阵乘等于反量化后矩阵乘。"""

from __future__ import annotations

from pathlib import Path

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


# ---- 10.3 MoE ----
from ch10_advanced.moe import (  # noqa: E402
    MoEConfig,
    ToyMoE,
    capacity,
    keep_mask,
    load_balance_loss,
    moe_grouped,
    moe_naive,
    routing_stats,
    train_router,
)


@pytest.mark.parametrize(
    ("experts", "k", "cf"), [(4, 1, None), (8, 2, 1.0), (8, 2, 0.5), (6, 3, 1.25)]
)
def test_grouped_moe_equals_per_token_reference(experts, k, cf):
    torch.manual_seed(experts * 10 + k)
    layer = ToyMoE(MoEConfig(hidden=16, ffn=24, num_experts=experts, top_k=k)).double()
    x = torch.randn(40, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(moe_grouped(layer, x, cf), moe_naive(layer, x, cf),
                                   rtol=0, atol=1e-12)  # fmt: skip


def test_capacity_drops_later_tokens_first_and_none_means_no_drops():
    cfg = MoEConfig(num_experts=2, top_k=1)
    assert (
        capacity(10, cfg, 1.0) == 5
        and capacity(10, cfg, 1.25) == 7
        and capacity(10, cfg, None) == 10
    )
    idx = torch.tensor([[0], [0], [1], [0], [0]])  # 专家 0 收到 4 个分配
    assert keep_mask(idx, 2, 2).flatten().tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError):
        capacity(10, cfg, 0)
    with pytest.raises(ValueError):
        MoEConfig(num_experts=2, top_k=3)


def test_balance_loss_is_one_when_uniform_and_larger_when_skewed():
    probs = torch.full((8, 4), 0.25)
    uniform = torch.arange(8).remainder(4)[:, None]
    assert load_balance_loss(probs, uniform).item() == pytest.approx(1.0)
    skew_p = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(8, 1)
    assert load_balance_loss(skew_p, torch.zeros(8, 1, dtype=torch.long)).item() == pytest.approx(
        2.8
    )


def test_more_capacity_fewer_drops_and_aux_loss_training_rebalances():
    torch.manual_seed(0)
    layer = ToyMoE(MoEConfig()).double()
    x = torch.randn(256, 64, dtype=torch.float64)
    with torch.no_grad():
        layer.router.weight[0] += 0.6
        drops = [routing_stats(layer, x, cf)["dropped"] for cf in (1.0, 1.25, 2.0, None)]
    assert drops == sorted(drops, reverse=True) and drops[0] > 0.1 and drops[-1] == 0
    before = routing_stats(layer, x, 1.25)
    train_router(layer, x, steps=60, aux_weight=1.0, lr=1.0)
    with torch.no_grad():
        after = routing_stats(layer, x, 1.25)
    assert after["balance_loss"] < before["balance_loss"] and after["dropped"] < before["dropped"]


# ---- 10.4 视觉 token ----
from ch10_advanced.vision import (  # noqa: E402
    CLIP_L14_336,
    fixed_tokens,
    image_cost,
    qwen2vl_resize,
    qwen2vl_tokens,
    vit_flops,
)


def transformers_smart_resize():
    """取出 transformers 5.23.0 里的 ``smart_resize`` 原函数。导入它所在的模块要 torchvision，
    本书不装它，所以从源文件里解析出这一个函数单独编译（它只用到 math）。"""
    import ast
    import importlib.util
    import math

    spec = importlib.util.find_spec("transformers.models.qwen2_vl")
    path = Path(spec.submodule_search_locations[0]) / "image_processing_qwen2_vl.py"
    tree = ast.parse(path.read_text("utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "smart_resize")
    scope = {"math": math}
    exec(compile(ast.Module([fn], []), str(path), "exec"), scope)  # noqa: S102
    return scope["smart_resize"]


def test_qwen2vl_resize_matches_transformers_smart_resize():
    smart_resize = transformers_smart_resize()

    for h in (1, 20, 56, 224, 333, 768, 1080, 2160, 4000):
        for w in (28, 100, 448, 1024, 1920, 3840):
            if max(h, w) / min(h, w) > 200:
                continue
            assert qwen2vl_resize(h, w) == smart_resize(h, w), (h, w)
    with pytest.raises(ValueError):
        qwen2vl_resize(0, 10)


def test_token_counts_and_costs_grow_with_resolution():
    assert fixed_tokens() == 576  # LLaVA-1.5：336 / 14 = 24，24² = 576
    assert qwen2vl_tokens(224, 224) == (256, 64)
    counts = [qwen2vl_tokens(s, s)[1] for s in (224, 448, 896)]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert qwen2vl_tokens(2160, 3840) == qwen2vl_tokens(1080, 1920)  # 都被 max_pixels 夹住
    # 1 层、宽 2、MLP 4 的 ViT，3 个 patch：线性 2·3·(4·4 + 2·2·4) = 192，注意力 4·9·2 = 72
    from ch10_advanced.vision import VisionTower

    assert vit_flops(VisionTower("t", 1, 2, 4, 14), 3) == 192 + 72
    from ch03_gpu.vram import load_models

    cfg = load_models()["llama-3-8b"][1]
    small, big = (image_cost(cfg, CLIP_L14_336, n, n, 128) for n in (64, 576))
    assert (
        big.llm_prefill_flops > 8 * small.llm_prefill_flops and big.kv_bytes == 9 * small.kv_bytes
    )


# ---- 10.2 异构部署 ----
from ch10_advanced.hetero import (  # noqa: E402
    place,
    rl_iteration_cost,
    rollout_fits,
    train_microbatch,
)


def test_training_is_compute_bound_and_rollout_is_memory_bound():
    from ch03_gpu.roofline import decode
    from ch03_gpu.specs import load_gpus
    from ch03_gpu.vram import load_models

    cfg = load_models()["llama-3-8b"][1]
    train, roll = train_microbatch(cfg, 16384), decode(cfg, 64, 2048)
    assert train.intensity > 50 * roll.intensity
    gpus = load_gpus()
    h100, h200 = gpus["h100-sxm"], gpus["h200-sxm"]
    prices = {"h100-sxm": 3.0, "h200-sxm": 3.5}
    assert [p.bound for p in place(train, 16384, [h100, h200], prices)] == ["compute"] * 2
    assert place(train, 16384, [h100, h200], prices)[0].gpu == "h100-sxm"  # 同算力、更便宜
    assert place(roll, 64, [h100, h200], prices)[0].gpu == "h200-sxm"  # 带宽/价格更高
    plans = rl_iteration_cost(cfg, 10**6, 4 * 10**6, [h100, h200], prices)
    assert (plans[0].train_gpu, plans[0].rollout_gpu) == ("h100-sxm", "h200-sxm")
    same_price = rl_iteration_cost(
        cfg, 10**6, 4 * 10**6, [h100, h200], {"h100-sxm": 3.0, "h200-sxm": 3.0}
    )
    assert same_price[0].rollout_gpu == "h200-sxm" and same_price[0].usd < plans[0].usd
    # batch 256 × 2048 的 KV 加权重约 85 GB：80 GB 的 H100 放不下，141 GB 的 H200 放得下
    assert not rollout_fits(cfg, h100, 256, 2048) and rollout_fits(cfg, h200, 256, 2048)
    only_h200 = rl_iteration_cost(cfg, 10**6, 4 * 10**6, [h100, h200], prices, batch=256)
    assert {p.rollout_gpu for p in only_h200} == {"h200-sxm"}


# ---- 10.7 Triton 融合算子（CPU 上用 TRITON_INTERPRET=1）----
from ch10_advanced.triton_ops import (  # noqa: E402
    add_rmsnorm_fused,
    add_rmsnorm_reference,
    traffic_bytes,
)


@pytest.mark.parametrize("shape", [(4, 64), (3, 100), (2, 5, 96)])
def test_triton_add_rmsnorm_equals_reference_in_float32(shape):
    import os

    assert os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()
    torch.manual_seed(sum(shape))
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # 有 GPU 时跑编译后的内核
    x, res = torch.randn(shape, device=dev), torch.randn(shape, device=dev)
    w = torch.randn(shape[-1], device=dev)
    y0, r0 = add_rmsnorm_reference(x, res.clone(), w)
    res1 = res.clone()
    y1, r1 = add_rmsnorm_fused(x, res1, w)
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-5)
    torch.testing.assert_close(r1, r0, rtol=0, atol=0)
    assert r1 is res1  # residual 就地更新


def test_triton_add_rmsnorm_bfloat16_within_one_ulp_and_rejects_bad_shapes():
    torch.manual_seed(1)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x, res, w = (torch.randn(*shape).bfloat16().to(dev) for shape in ((8, 128), (8, 128), (128,)))
    y0, r0 = add_rmsnorm_reference(x, res.clone(), w)
    y1, r1 = add_rmsnorm_fused(x, res.clone(), w)
    # 解释器把 FP32 转 BF16 时截断，PyTorch 就近舍入：允许 1 个 BF16 ulp（相对 2⁻⁷）
    torch.testing.assert_close(r1, r0, rtol=2**-7, atol=0)
    torch.testing.assert_close(y1.float(), y0.float(), rtol=2**-6, atol=2**-6)
    with pytest.raises(ValueError):
        add_rmsnorm_fused(x, res[:, :64], w)


def test_fused_kernel_moves_less_memory():
    for rows in (1, 64, 4096):
        t = traffic_bytes(rows, 4096)
        assert t["unfused"] > 5 * t["fused"]
    assert traffic_bytes(1, 8)["fused"] == 2 * (4 * 8 + 8)  # 读 x、residual、w，写 residual、y


def test_ch10_cli_errors_are_one_line(capsys):
    assert_clean_cli_error(main, ["vision", "--sizes", "10by20"], capsys)
    assert_clean_cli_error(main, ["hetero", "--price", "h100-sxm=free"], capsys)
    assert_clean_cli_error(main, ["moe", "--capacity-factors", "0"], capsys)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            main(["bench-fused", "--device", "cuda"])
        assert str(e.value.code).startswith("错误：没有可用的 CUDA GPU")


# ---- 10.5 torch.compile 与 10.7 实测融合（要 C++ 编译器；CI 装了 g++）----
needs_cxx = pytest.mark.skipif(
    __import__("ch10_advanced.compiled", fromlist=["x"]).compiler_available() is not None,
    reason="没有 C++ 编译器",
)


@pytest.mark.serial  # 计时比较：不与其他测试进程同时跑
@needs_cxx
def test_compiled_decode_step_gives_same_tokens_and_is_faster():
    from ch10_advanced.compiled import measure
    from tinyllm import ModelConfig, TinyLLM

    torch.manual_seed(0)
    model = TinyLLM(ModelConfig(num_hidden_layers=1)).eval()  # 一层：编译快，省测试时间
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 与 compile 子命令的默认一致：单线程，少受机器负载干扰
    try:
        report = measure(model, [model.config.bos_token_id, *b"KV Cache"], new_tokens=40)
    finally:
        torch.set_num_threads(threads)
    assert report.same_tokens
    assert report.compiled_ms < report.eager_ms, report
    assert report.compile_s > 0.5  # 编译是真的发生了，而且代价可见


@pytest.mark.serial  # 计时比较：不与其他测试进程同时跑
@needs_cxx
def test_inductor_fused_add_rmsnorm_beats_eager_on_cpu():
    from ch10_advanced.fused_bench import bench

    lines = bench("cpu", rows=64, hidden=2048, repeats=20)
    speedup = float(lines[-1].split()[-1].rstrip("×"))
    assert speedup > 1.0, lines
