"""本书小模型：配置校验、分词器、与 transformers 的 LlamaForCausalLM 逐位对齐、随书默认模型。"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import unicodedata

import pytest
import torch
from conftest import assert_clean_cli_error
from tinyllm import (
    DEFAULT_DIR,
    PRESETS,
    ByteTokenizer,
    ModelConfig,
    TinyLLM,
    generate,
    generate_no_cache,
    load_default,
    load_pretrained,
    save_pretrained,
    to_hf_tokenizer,
)
from tinyllm.__main__ import main
from tinyllm.train import TrainConfig, train

# fp32 下两边做的是同样的矩阵乘，只有求和顺序不同：误差在 1e-6 量级，留一个数量级余量。
ATOL = 1e-5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden_size=100, num_attention_heads=8), "整除"),
        (dict(num_attention_heads=8, num_key_value_heads=3), "整数倍"),
        (dict(hidden_size=24, num_attention_heads=8), "偶数"),
        (dict(num_hidden_layers=0), "正整数"),
        (dict(eos_token_id=999), "超出词表"),
    ],
)
def test_config_rejects_invalid_shapes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_formula_matches_module(name):
    cfg = PRESETS[name]
    assert cfg.num_parameters() == sum(p.numel() for p in TinyLLM(cfg).parameters())


def test_byte_tokenizer_round_trips_chinese_and_matches_hf_tokenizer():
    tok, hf = ByteTokenizer(), to_hf_tokenizer()
    for text in ["显存带宽决定 decode 速度。", "  two spaces\n\ttab", "emoji 🚀 ünïcode"]:
        ids = tok.encode(text)
        assert ids[0] == tok.bos_token_id
        assert len(ids) == 1 + len(text.encode("utf-8"))
        assert tok.decode(ids) == text
        assert hf(text)["input_ids"] == ids
        assert hf.decode(ids, skip_special_tokens=True) == text
    assert tok.decode([0xE6, 0x98]) == "\ufffd"  # 截断的汉字不抛异常


def hf_llama(tmp_path, *, heads: int, kv_heads: int, tie: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.parametrize(
    "heads, kv_heads, tie",
    [(4, 2, False), (4, 4, False), (4, 1, True)],
    ids=["gqa-llama", "mha", "mqa-tied"],
)
def test_loads_hf_llama_weights_with_same_logits_and_greedy_tokens(tmp_path, heads, kv_heads, tie):
    ref = hf_llama(tmp_path, heads=heads, kv_heads=kv_heads, tie=tie)
    ours = load_pretrained(tmp_path)
    x = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, atol=ATOL, rtol=0)
    prompt = [1, 17, 42, 99, 7]
    want = ref.generate(
        torch.tensor([prompt]), max_new_tokens=30, do_sample=False, eos_token_id=None
    )[0, len(prompt) :].tolist()
    assert generate(ours, prompt, 30) == want
    assert generate_no_cache(ours, prompt, 30) == want


def test_transformers_loads_what_we_save(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ours = TinyLLM(PRESETS["test"]).eval()
    save_pretrained(ours, tmp_path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    x = torch.randint(0, 259, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, atol=ATOL, rtol=0)


def test_unsupported_rope_scaling_is_a_clear_error():
    raw = PRESETS["test"].to_hf_dict()
    raw["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    with pytest.raises(ValueError, match="rope_type='llama3'"):
        ModelConfig.from_hf_dict(raw)


def test_kv_cache_and_full_recompute_agree_on_the_default_model():
    model, tok = load_default(), ByteTokenizer()
    prompt = tok.encode("KV Cache 把")
    assert generate(model, prompt, 40) == generate_no_cache(model, prompt, 40)


def test_default_checkpoint_is_small_and_documented():
    size = (DEFAULT_DIR / "model.safetensors").stat().st_size
    assert size <= 10 * 1024 * 1024
    report = json.loads((DEFAULT_DIR / "training.json").read_text("utf-8"))
    assert report["val_loss"] < 2.5 and report["corpus_sha256"]


def test_default_model_writes_readable_chinese():
    model, tok = load_default(), ByteTokenizer()
    text = tok.decode(generate(model, tok.encode("推理优化的第一步是"), 150))
    assert "\ufffd" not in text[:-1]  # 除了末尾可能被截断的字，都是完整的 UTF-8
    cjk = sum(unicodedata.name(c, "").startswith("CJK") for c in text)
    assert cjk >= 25, text


def test_training_is_deterministic_and_reduces_loss():
    data = ("推理优化先看显存带宽。" * 80).encode("utf-8")
    tc = TrainConfig(steps=25, batch_size=4, seq_len=32, lr=1e-2, warmup=5, threads=1)
    cfg = PRESETS["test"]
    m1, r1 = train(data, cfg, tc, log=io.StringIO())
    m2, _ = train(data, cfg, tc, log=io.StringIO())
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert r1["val_loss"] < 3.0  # 随机初始化约 ln(259) ≈ 5.56


def test_cli_demo_runs_and_rejects_bad_input(capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "tinyllm", "--max-new-tokens", "30"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("推理优化的第一步是") and "TPOT" in proc.stdout
    assert_clean_cli_error(main, ["--max-new-tokens", "0"], capsys)
    assert_clean_cli_error(main, ["--model", "/nonexistent"], capsys)
