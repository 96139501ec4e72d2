"""第 7 章代码：量化与反量化、INT4 打包往返、FP8/FP4 格式、W4A16 线性层、QAT、KV 量化、精度对齐。"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ch07_quantization import alignment, formats, kv_quant, qat
from ch07_quantization.cli import decoder_weights, main, weight_sqnr
from ch07_quantization.pack import pack_int4, unpack_int4
from ch07_quantization.qmodel import (
    QuantLinear,
    finetune_ids,
    heldout_ids,
    linear_bytes,
    logit_drift,
    perplexity,
    quantize_model,
    quantized_weight,
)
from ch07_quantization.quant import QuantSpec, dequantize, error_metrics, fake_quantize, quantize
from conftest import assert_clean_cli_error
from tinyllm.hf import load_default


@pytest.fixture(scope="module")
def model():
    return load_default()


@pytest.fixture(scope="module")
def ids():
    return heldout_ids()


# ---------- 量化原语 ----------


@pytest.mark.parametrize("bits", [8, 4, 3])
@pytest.mark.parametrize("gran", ["tensor", "channel", "group"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_round_trip_error_is_at_most_half_a_step(bits, gran, symmetric):
    torch.manual_seed(0)
    w = torch.randn(16, 100) * torch.linspace(0.1, 3, 16)[:, None]  # 各行幅度不同
    spec = QuantSpec(bits, symmetric, gran, group_size=32)  # 100 不是 32 的倍数：测补 0
    qt = quantize(w, spec)
    assert qt.q.min() >= spec.qmin and qt.q.max() <= spec.qmax
    err = (dequantize(qt) - w).abs()
    groups = (
        F.pad(err, (0, 28)).reshape(-1, 32) if gran == "group" else err.reshape(qt.q.shape[0], -1)
    )
    assert (groups <= qt.scale / 2 + 1e-6).all()


def test_asymmetric_represents_zero_exactly_and_symmetric_int4_is_minus7_to_7():
    w = torch.tensor([[0.0, 0.3, 0.9, 2.0, 0.0, 0.1, 0.5, 1.0]])
    assert dequantize(quantize(w, QuantSpec(4, symmetric=False)))[0, 0] == 0
    spec = QuantSpec(4)
    assert (spec.qmin, spec.qmax) == (-7, 7)  # 与 LMSYS INT4 QAT 的 [-7, 7] 一致
    assert (QuantSpec(8).qmax, QuantSpec(8, symmetric=False).qmax) == (127, 255)


@pytest.mark.parametrize(
    "kwargs", [{"bits": 5}, {"granularity": "row"}, {"granularity": "group", "group_size": 12}]
)
def test_bad_spec_is_rejected(kwargs):
    with pytest.raises(ValueError):
        QuantSpec(**kwargs)


def test_error_shrinks_with_more_bits_and_finer_groups(model):
    weights = decoder_weights(model)

    def sqnr(spec):
        return weight_sqnr(weights, lambda w: fake_quantize(w, spec))

    by_bits = [sqnr(QuantSpec(b, True, "group", 128)) for b in (2, 3, 4, 8)]
    assert by_bits == sorted(by_bits)
    by_gran = [sqnr(QuantSpec(4, True, g, 32)) for g in ("tensor", "channel", "group")]
    assert by_gran == sorted(by_gran)
    # 每多 1 位，SQNR 大约多 6 dB（量化噪声功率降到 1/4）
    assert 4.5 < (by_bits[3] - by_bits[2]) / 4 < 7.5


def test_error_metrics_by_hand():
    m = error_metrics(torch.tensor([1.0, -1.0, 2.0, 0.0]), torch.tensor([1.0, -1.0, 1.0, 0.0]))
    assert m["mse"] == pytest.approx(0.25) and m["max_abs"] == 1.0
    assert m["sqnr_db"] == pytest.approx(10 * torch.log10(torch.tensor(1.5 / 0.25)).item())


# ---------- INT4 打包 ----------


@pytest.mark.parametrize("signed", [True, False])
def test_int4_pack_round_trip_is_exact(signed):
    lo = -8 if signed else 0
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(lo, lo + 16, (37, 64), generator=gen)
    q[0, :8] = torch.tensor([lo, lo + 15] * 4)  # 两个端点都出现在最高 4 位
    packed = pack_int4(q, signed=signed)
    assert packed.dtype == torch.int32 and packed.shape == (37, 8)
    assert torch.equal(unpack_int4(packed, signed=signed), q.to(torch.int16))


def test_int4_pack_layout_and_errors():
    word = pack_int4(torch.tensor([[-8, -1, 0, 1, 2, 3, 7, -7]]))
    assert int(word) & 0xFFFFFFFF == 0x1FBA9870  # 第 i 个值 + 8 占第 4i..4i+3 位
    with pytest.raises(ValueError):
        pack_int4(torch.tensor([[8] * 8]))
    with pytest.raises(ValueError):
        pack_int4(torch.zeros(1, 6, dtype=torch.int64))


# ---------- FP8 / FP4 ----------


def test_fp4_rounding_follows_e2m1_grid_and_ties_to_even():
    grid = formats.FP4_GRID
    assert torch.equal(formats.round_to_fp4(grid), grid)
    assert torch.equal(formats.round_to_fp4(-grid), -grid)
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    assert formats.round_to_fp4(ties).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    assert formats.round_to_fp4(torch.tensor([100.0, -7.0])).tolist() == [6.0, -6.0]


def test_mx_scale_is_power_of_two_and_nvfp4_beats_mxfp4_on_gaussian():
    torch.manual_seed(0)
    x = torch.randn(64, 256)
    mx = formats.mxfp4_quantize(x)
    blocks, qblocks = x.reshape(-1, 32), mx.reshape(-1, 32)
    for b, qb in zip(blocks[:8], qblocks[:8], strict=True):
        scale = 2.0 ** (torch.floor(torch.log2(b.abs().max())) - 2)
        assert torch.equal(qb, formats.round_to_fp4(b / scale) * scale)
    e_mx = error_metrics(x, mx)["sqnr_db"]
    e_nv = error_metrics(x, formats.nvfp4_quantize(x))["sqnr_db"]
    assert e_nv > e_mx  # 块更小、缩放是 E4M3 而不是 2 的幂
    e4m3 = error_metrics(x, formats.fp8_quantize(x, "e4m3"))["sqnr_db"]
    e5m2 = error_metrics(x, formats.fp8_quantize(x, "e5m2"))["sqnr_db"]
    assert e4m3 > e5m2 > e_nv  # 尾数位多的误差小；8 位好过 4 位
    assert [r[:2] for r in formats.describe_fp8()] == [("E4M3", 448.0), ("E5M2", 57344.0)]


def test_bits_per_element():
    assert formats.bits_per_element("MXFP4") == 4.25
    assert formats.bits_per_element("NVFP4") == 4.5
    assert formats.bits_per_element("INT4-g128") == 4.125


# ---------- 量化本书模型 ----------


def test_quant_linear_stores_packed_ints_and_matches_fake_quant(model):
    spec = QuantSpec(4, True, "group", 128)
    lin = model.model.layers[0].mlp.down_proj  # 688 维输入：最后一组补 0
    ql = QuantLinear(lin, spec)
    assert ql.qweight.dtype == torch.int32
    qt = quantize(lin.weight, spec)
    assert torch.equal(quantized_weight(ql).q, qt.q)
    # scale 在 quantize 里就按 fp16 舍入：部署的权重与 QAT 训练时的伪量化逐位相同
    assert torch.equal(ql.weight(), fake_quantize(lin.weight, spec))
    x = torch.randn(5, lin.in_features)
    torch.testing.assert_close(ql(x), x @ dequantize(qt).T)


def test_quantized_model_memory_and_quality_order(model, ids):
    specs = [QuantSpec(8), QuantSpec(4, True, "group", 128), QuantSpec(3)]
    qs = [quantize_model(model, s) for s in specs]
    sizes = [linear_bytes(q) for q in qs]
    full = linear_bytes(model)
    assert sizes[0] / full == pytest.approx(0.5, abs=0.02)  # INT8 约为 bf16 的一半
    assert sizes[1] / full == pytest.approx(0.25 + 1 / 128 / 2 * 2, abs=0.02)  # INT4 + fp16 scale
    drift = [logit_drift(model, q, ids[:2049]) for q in qs]
    kls = [d["kl"] for d in drift]
    assert kls == sorted(kls)
    assert drift[0]["top1_agree"] > 0.98
    assert isinstance(qs[1].lm_head, torch.nn.Linear)  # lm_head 与嵌入保持原精度
    assert perplexity(qs[2], ids) > perplexity(model, ids)


# ---------- QAT ----------


def test_ste_passes_gradient_straight_through():
    w = torch.randn(8, 16, requires_grad=True)
    g = torch.randn(8, 16)
    out = qat.FakeQuantSTE.apply(w, QuantSpec(4))
    assert torch.equal(out.detach(), fake_quantize(w.detach(), QuantSpec(4)))
    out.backward(g)
    assert torch.equal(w.grad, g)


def test_qat_recovers_what_ptq_loses(model, ids):
    """同样的数据、步数、学习率：QAT 后真量化的困惑度低于“普通微调 + PTQ”，也低于直接 PTQ。"""
    spec = QuantSpec(3)
    data = finetune_ids()
    fc = qat.FinetuneConfig(steps=60)  # 与 python -m ch07_quantization qat 的默认相同
    ft = qat.finetune(model, data, fc, None)
    qt = qat.finetune(model, data, fc, spec)
    assert all(type(m) is not qat.QATLinear for m in qt.modules())
    ptq = perplexity(quantize_model(model, spec), ids)
    ft_ptq = perplexity(quantize_model(ft, spec), ids)
    qat_q = perplexity(quantize_model(qt, spec), ids)
    assert qat_q < ft_ptq < ptq


# ---------- KV Cache 量化 ----------


def test_kv_quantization_bytes_and_error_order(model, ids):
    sub = ids[:1025]
    r = {m: kv_quant.kv_eval(model, sub, m) for m in kv_quant.KV_MODES}
    assert r["none"]["kl"] == pytest.approx(0, abs=1e-9)
    assert r["int8"]["kl"] < r["fp8_e4m3"]["kl"] < r["fp8_e5m2"]["kl"]
    assert r["int8"]["kl"] < r["int4"]["kl"]
    assert r["int8"]["top1_agree"] > 0.98
    cfg = model.config
    per_head = cfg.head_dim
    assert kv_quant.bytes_per_token(model, "none") == 2 * cfg.num_hidden_layers * 2 * per_head * 2
    assert (
        kv_quant.bytes_per_token(model, "fp8_e4m3") == kv_quant.bytes_per_token(model, "none") / 2
    )


def test_kv_per_token_head_scale_bounds_error():
    x = torch.randn(10, 2, 32)
    q, s = kv_quant.quantize_per_token_head(x, 127)
    assert s.shape == (10, 2, 1) and q.dtype == torch.int8
    assert ((q.float() * s - x).abs() <= s / 2 + 1e-6).all()


# ---------- 精度对齐 ----------


def test_alignment_tolerance_patterns():
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(32, 2048, generator=gen), torch.randn(2048, 64, generator=gen) / 45
    ref = alignment.matmul_reference(x, w)
    assert alignment.check_close(
        alignment.matmul_splitk(x, w, 8, torch.float32), ref, torch.float32
    )[0]
    bf = alignment.matmul_splitk(x, w, 1, torch.bfloat16)
    assert not alignment.check_close(bf, ref, torch.bfloat16)[0]  # 默认 atol 对 bf16 累加太紧
    split = alignment.matmul_splitk(x, w, 16, torch.bfloat16)
    assert (split - ref).abs().max() > (bf - ref).abs().max()  # 切得越碎，bf16 舍入越多
    assert alignment.check_against_reference(split, bf, ref, factor=4)[0]


def test_decode_drift_grows_with_steps(model):
    prompt = list("KV Cache 的作用是".encode())
    r = alignment.decode_drift(model, alignment.lowp_copy(model), prompt, 192)
    half = len(r["kl"]) // 2
    assert r["kl"][half:].mean() > r["kl"][:half].mean()
    assert r["logp_gap"][half:].mean() > r["logp_gap"][:half].mean()
    same = alignment.decode_drift(model, model, prompt, 32)
    assert same["first_divergence"] is None and same["kl"].abs().max() < 1e-6


# ---------- 命令行 ----------


def test_cli_commands_print_tables(capsys):
    main(["pack"])
    assert "0x1FBA9870" in capsys.readouterr().out
    main(["formats"])
    out = capsys.readouterr().out
    assert "NVFP4" in out and "E4M3: 最大 448" in out


def test_primitives_plot(tmp_path, capsys):
    out = tmp_path / "err.svg"
    main(["primitives", "--plot", str(out)])
    assert out.read_text("utf-8").startswith("<?xml")


@pytest.mark.parametrize(
    "argv", [["qat", "--bits", "5"], ["qat", "--steps", "0"], ["align", "--steps", "x"]]
)
def test_bad_arguments_are_one_line_errors(argv, capsys):
    assert_clean_cli_error(main, argv, capsys)


def test_bad_model_dir_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["kv", "--model", "/nonexistent"])
    assert str(exc.value.code).startswith("错误：")
