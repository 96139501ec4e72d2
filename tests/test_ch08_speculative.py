"""第 8 章代码：各种草稿在贪心下与逐 token 解码相同、拒绝采样保持目标分布、加速比公式、EAGLE。"""

from __future__ import annotations

import copy

import pytest
import torch
from ch08_speculative.cli import CHECKPOINTS, main
from ch08_speculative.eagle import EagleProposer, EagleTrainConfig, load_head, train_eagle
from ch08_speculative.lm import CachedLM
from ch08_speculative.proposers import DraftModelProposer, JacobiProposer, NgramProposer
from ch08_speculative.speculative import (
    SpecStats,
    expected_speedup,
    expected_tokens_per_step,
    speculative_generate,
    verify,
)
from ch08_speculative.toy import MarkovLM, chi_square, exact_distribution, sample_continuations
from conftest import assert_clean_cli_error
from tinyllm.config import PRESETS
from tinyllm.generate import generate
from tinyllm.hf import load_default, load_model
from tinyllm.model import TinyLLM

PROMPT = list("KV Cache 的作用是".encode())
NEW = 48
MAX_LEN = len(PROMPT) + NEW + 8


@pytest.fixture(scope="module")
def greedy_ref():
    return generate(load_default(), PROMPT, NEW)


def proposer(name: str, target: CachedLM):
    if name == "ngram":
        return NgramProposer()
    if name == "jacobi":
        return JacobiProposer()
    if name == "eagle":
        return EagleProposer(load_head(target.model), target)
    if name == "int4-self":
        from ch07_quantization.qmodel import dequantized, quantize_model
        from ch07_quantization.quant import QuantSpec

        int4 = dequantized(quantize_model(load_default(), QuantSpec(4)))
        return DraftModelProposer(CachedLM(int4, MAX_LEN))
    return DraftModelProposer(CachedLM(load_model(CHECKPOINTS / name), MAX_LEN))


@pytest.mark.parametrize(
    ("name", "gamma"),
    [
        ("draft", 1),
        ("draft", 5),
        ("draft-xs", 3),
        ("int4-self", 3),
        ("eagle", 3),
        ("ngram", 3),
        ("jacobi", 3),
    ],
)
def test_greedy_speculative_equals_plain_greedy(name, gamma, greedy_ref):
    target = CachedLM(load_default(), MAX_LEN)
    out, stats = speculative_generate(target, proposer(name, target), PROMPT, NEW, gamma)
    assert out == greedy_ref
    assert stats.generated >= NEW and stats.tokens_per_step >= 1.0
    if name in ("draft", "int4-self", "eagle"):
        assert stats.tokens_per_step > 1.3  # 草稿确实省下了目标前向


def test_cached_lm_rollback_matches_fresh_forward():
    model = load_default()
    lm = CachedLM(copy.deepcopy(model))
    lm.logits(PROMPT + [1, 2, 3, 4], 3)  # 先喂进 4 个“草稿”
    got = lm.logits(PROMPT + [1, 9, 9], 2)  # 只接受了第 1 个：公共前缀之后重算
    want = model(torch.tensor([PROMPT + [1, 9, 9]]))[0, -2:]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        lm.logits(PROMPT, 0)


def test_verify_greedy_and_residual():
    p = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    gen = torch.Generator().manual_seed(0)
    assert verify(p, None, [1, 0], 0.0, gen) == (2, 2)  # 两个都对，再白拿 argmax
    assert verify(p, None, [1, 2], 0.0, gen) == (1, 0)  # 第二个错：换成目标的 argmax
    q = torch.tensor([[0.0, 0.0, 1.0]])  # 草稿必然提议 2，而 p(2) = 0.2
    outcomes = [verify(p[:2], q, [2], 1.0, gen) for _ in range(4000)]
    accepted = sum(n for n, _ in outcomes) / len(outcomes)
    assert accepted == pytest.approx(0.2, abs=0.03)
    resampled = [x for n, x in outcomes if n == 0]
    assert 2 not in resampled  # 残差 max(0, p − q) 在 2 上为 0
    frac1 = resampled.count(1) / len(resampled)
    assert frac1 == pytest.approx(0.7 / 0.8, abs=0.03)


def test_rejection_sampling_keeps_the_target_distribution():
    """卡方检验：N = 6000，27 种结果；正确实现 p > 0.001、总变差 < 0.03，错误对照 p < 1e-9。"""
    target, draft = MarkovLM.random(3, 1, floor=0.2), MarkovLM.random(3, 2, floor=0.2)
    exact = exact_distribution(target, [0], 3)
    n = 6000
    good = sample_continuations(target, draft, [0], 3, 2, n)
    _, df, p = chi_square(good, exact, n)
    tv = 0.5 * sum(abs(good.get(k, 0) / n - v) for k, v in exact.items())
    assert df == 26 and p > 1e-3 and tv < 0.03
    bad = sample_continuations(target, draft, [0], 3, 2, n, accept_all=True)
    assert chi_square(bad, exact, n)[2] < 1e-9


def test_self_draft_is_always_accepted_when_sampling():
    model = load_default()
    target = CachedLM(model, 64)
    draft = DraftModelProposer(CachedLM(copy.deepcopy(model), 64))
    _, stats = speculative_generate(target, draft, PROMPT, 40, 4, temperature=0.8, seed=1)
    assert stats.alpha > 0.95  # p = q：接受概率 min(1, p/q) = 1（只差浮点舍入）


def test_expected_speedup_formula():
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(1.0, 4) == 5.0
    assert expected_tokens_per_step(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)
    assert expected_speedup(0.8, 4, 0.0) == pytest.approx(3.3616)
    assert expected_speedup(0.5, 8, 0.2) < 1.0  # 接受率低、草稿又不够便宜时反而更慢
    for bad in [(1.2, 4, 0.1), (-0.1, 4, 0.1), (0.5, -1, 0.1), (0.5, 4, -0.1)]:
        with pytest.raises(ValueError):
            expected_speedup(*bad)


def test_alpha_estimator_counts_only_tested_positions():
    s = SpecStats()
    s.record(4, 4)  # 4 个全接受
    s.record(4, 1)  # 接受 1 个后被拒：之后 2 个位置没被检验
    assert s.alpha == pytest.approx(5 / 6) and s.tokens_per_step == pytest.approx(7 / 2)
    assert s.accepted_at == [2, 1, 1, 1]


def test_jacobi_refuses_sampling():
    with pytest.raises(ValueError):
        JacobiProposer().propose([1, 2], 2, 0.7, torch.Generator())


def test_eagle_training_reduces_loss():
    torch.manual_seed(0)
    target = TinyLLM(PRESETS["test"])
    data = list(("投机采样先让草稿猜，再让目标一次验证。" * 40).encode())
    tc = EagleTrainConfig(steps=1, batch_size=4, seq_len=32, seed=0)
    _, first = train_eagle(copy.deepcopy(target), data, tc)
    head, last = train_eagle(copy.deepcopy(target), data, EagleTrainConfig(40, 4, 32, seed=0))
    assert last["final_cls"] < first["final_cls"]
    assert sum(p.numel() for p in head.parameters()) < sum(p.numel() for p in target.parameters())


def test_cli_check_and_demo(capsys):
    main(["check", "--samples", "600"])
    out = capsys.readouterr().out
    assert "投机采样（拒绝采样）" in out and "草稿一律接受" in out
    main(["demo", "--max-new-tokens", "24", "--gamma", "3"])
    assert "与逐 token 贪心解码完全相同" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["sweep", "--gamma", "0"], ["demo", "--draft", "gpt"], ["check", "--samples", "x"]]
)
def test_bad_arguments_are_one_line_errors(argv, capsys):
    assert_clean_cli_error(main, argv, capsys)


def test_semantic_errors_are_one_line(capsys):
    for argv, msg in [
        (["demo", "--draft", "jacobi", "--temperature", "0.5"], "Jacobi"),
        (["demo", "--temperature", "-1"], "不能为负"),
        (["demo", "--model", "/nonexistent"], "错误："),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert msg in str(exc.value.code)


def test_sweep_table_and_plot(tmp_path, capsys):
    main(
        [
            "sweep",
            "--proposers",
            "draft-xs",
            "--gamma",
            "2",
            "--max-new-tokens",
            "16",
            "--no-timing",
        ]
    )
    out = capsys.readouterr().out
    assert "| draft-xs | 2 |" in out and "实测加速比" not in out
    from ch08_speculative.plot import plot_sweep

    rows = [
        {"name": "d", "gamma": g, "alpha": 0.7, "tokens_per_step": 2.0, "speedup": 1.2}
        for g in (1, 2, 4)
    ]
    assert plot_sweep(rows, "t", tmp_path / "s.svg").read_text("utf-8").startswith("<?xml")
