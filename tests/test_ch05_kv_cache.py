"""第 5 章代码：朴素生成与 KV Cache 等价、FLOPs 对得上公式、分页注意力等于连续注意力、
前缀缓存与淘汰。
"""

from __future__ import annotations

import random

import pytest
import torch
from ch03_gpu.vram import kv_bytes_per_token, load_models
from ch05_kv_cache.cli import main
from ch05_kv_cache.kv_size import KVLayout, load_layouts
from ch05_kv_cache.naive import (
    count_flops,
    forward_full,
    generate_cached,
    generate_recompute,
    generation_flops,
    step_times,
)
from ch05_kv_cache.paged import BlockManager, Chunk, NoFreeBlocks, PagedKVCache, forward_paged
from ch05_kv_cache.prefix import PrefixCachingBlockManager, block_hashes
from ch05_kv_cache.workloads import (
    agent_prefill_tokens,
    agent_transcript,
    mixed_requests,
    prefill_all,
    shared_prefix_prompts,
    waste_table,
)
from conftest import assert_clean_cli_error
from tinyllm import PRESETS, TinyLLM
from tinyllm.generate import generate
from tinyllm.hf import load_default


@pytest.fixture(scope="module")
def model():
    return load_default()


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return TinyLLM(PRESETS["test"]).eval()


def test_recompute_and_kv_cache_give_identical_greedy_tokens(model, random_model):
    for m in (model, random_model):
        prompt = [m.config.bos_token_id] + list("注意力 attention".encode())
        reference = generate(m, prompt, 24)
        assert generate_recompute(m, prompt, 24) == reference
        assert generate_cached(m, prompt, 24) == reference


@pytest.mark.parametrize("prompt, new", [(1, 1), (7, 5), (20, 12)])
def test_counted_flops_equal_the_formula(random_model, prompt, new):
    ids = list(range(3, 3 + prompt))
    cfg = random_model.config
    assert count_flops(lambda: generate_recompute(random_model, ids, new)) == generation_flops(
        cfg, prompt, new, False
    )
    assert count_flops(lambda: generate_cached(random_model, ids, new)) == generation_flops(
        cfg, prompt, new, True
    )


def test_recompute_flops_grow_quadratically_and_cached_linearly(model):
    cfg = model.config
    naive = [generation_flops(cfg, 16, n, cached=False) for n in (100, 200)]
    cached = [generation_flops(cfg, 16, n, cached=True) for n in (100, 200)]
    assert naive[1] / naive[0] > 3  # 长度翻倍，重算的总量接近 4 倍
    assert cached[1] / cached[0] < 2.2  # 缓存接近线性


@pytest.mark.serial  # 计时比较：不与其他测试进程同时跑
def test_cached_decode_step_is_faster_than_recompute_at_long_context(model):
    ((_, naive, cached),) = step_times(model, [256], repeats=3)
    assert naive > 2 * cached


def test_kv_layouts_match_hand_calculation_and_chapter_3():
    layouts = load_layouts()
    assert layouts["llama-2-7b"].bytes_per_token() == 2 * 32 * 32 * 128 * 2 == 524_288
    assert layouts["falcon-7b"].bytes_per_token() == 2 * 32 * 1 * 64 * 2
    assert layouts["deepseek-v3"].bytes_per_token() == 61 * (512 + 64) * 2 == 70_272
    assert layouts["llama-3-8b"].bytes_per_token() == kv_bytes_per_token(
        load_models()["llama-3-8b"][1]
    )
    assert layouts["llama-3-70b"].bytes_per_token() == kv_bytes_per_token(
        load_models()["llama-3-70b"][1]
    )
    assert all(layout.source.startswith("https://huggingface.co/") for layout in layouts.values())
    with pytest.raises(ValueError, match="kv_lora_rank"):
        KVLayout("x", "mla", "s", 4, 4)
    with pytest.raises(ValueError, match="未知"):
        KVLayout("x", "linear", "s", 4, 4, 4, 64)


def test_block_manager_allocates_frees_and_refuses_atomically():
    m = BlockManager(num_blocks=4, block_size=4)
    m.allocate_slots(1, 6)  # 2 块
    assert len(m.block_tables[1]) == 2 and m.num_free_blocks() == 2
    table = m.block_tables[1]
    assert m.slot_mapping(1, 0, 6) == [table[p // 4] * 4 + p % 4 for p in range(6)]
    m.allocate_slots(1, 2)  # 第 7、8 个 token 还在第 2 块里
    assert m.num_free_blocks() == 2
    with pytest.raises(NoFreeBlocks):
        m.allocate_slots(2, 13)  # 要 4 块，只剩 2 块
    assert 2 not in m.block_tables and m.num_free_blocks() == 2  # 失败不留半截状态
    m.free(1)
    assert m.num_free_blocks() == 4 and m.ref_count == [0] * 4


def test_fork_shares_blocks_and_copies_the_partial_last_block_on_write():
    m = BlockManager(num_blocks=8, block_size=4)
    m.allocate_slots(1, 6)
    m.fork(1, 2)
    shared = m.block_tables[1]
    assert m.block_tables[2] == shared and all(m.ref_count[b] == 2 for b in shared)
    copies = m.allocate_slots(2, 1)  # 写第 7 个 token 进共享的半满块：先复制
    assert copies == [(shared[1], m.block_tables[2][1])]
    assert m.block_tables[2][0] == shared[0] and m.block_tables[2][1] != shared[1]
    assert m.ref_count[shared[1]] == 1 and m.ref_count[shared[0]] == 2
    m.free(1)
    m.free(2)
    assert m.num_free_blocks() == 8


def test_paged_attention_on_scattered_blocks_equals_contiguous(model):
    prompts = [[256] + list(t.encode()) for t in ("分页注意力", "block table", "KV Cache 的块")]
    manager = BlockManager(num_blocks=32, block_size=4)
    order = list(manager.free_blocks)
    random.Random(0).shuffle(order)  # 打乱空闲块：每个序列的块在池子里东一块西一块
    manager.free_blocks = dict.fromkeys(order)
    cache = PagedKVCache(model, 32, 4)
    for seq_id, p in enumerate(prompts):
        manager.allocate_slots(seq_id, len(p))
    with torch.inference_mode():
        logits = forward_paged(
            model, cache, manager, [Chunk(i, p, 0) for i, p in enumerate(prompts)]
        )
    for got, p in zip(logits.split([len(p) for p in prompts]), prompts, strict=True):
        torch.testing.assert_close(got, forward_full(model, p), atol=1e-5, rtol=1e-5)


def test_paged_decode_with_copy_on_write_matches_independent_runs(model):
    """两个分支共享提示的块，各自往下生成：结果与各自独立生成完全相同。"""
    prompt = [256] + list("前缀共享".encode())  # 13 个 token：最后一块半满
    manager, cache = BlockManager(16, 4), PagedKVCache(model, 16, 4)
    manager.allocate_slots(0, len(prompt))
    with torch.inference_mode():
        first = forward_paged(model, cache, manager, [Chunk(0, prompt, 0)])[-1].argmax()
        manager.fork(0, 1)
        branches = {0: [int(first)], 1: [int(first.item() + 1) % 256]}  # 第二个分支换一个开头
        for step in range(8):
            for seq_id, out in branches.items():
                for src, dst in manager.allocate_slots(seq_id, 1):
                    cache.copy_block(src, dst)
                pos = len(prompt) + step
                logits = forward_paged(model, cache, manager, [Chunk(seq_id, out[-1:], pos)])
                out.append(int(logits[-1].argmax()))
    for out in branches.values():
        assert out[1:] == generate(model, prompt + out[:1], 8)


def test_block_hashes_are_chained_and_keyed():
    a = block_hashes(list(range(12)), 4)
    assert len(a) == 3 and len(block_hashes(list(range(11)), 4)) == 2  # 只算满块
    changed = block_hashes([99] + list(range(1, 12)), 4)
    assert all(x != y for x, y in zip(a, changed, strict=True))  # 第一块变了，后面全变
    tail = block_hashes(list(range(11)) + [99], 4)
    assert tail[:2] == a[:2] and tail[2] != a[2]
    assert block_hashes(list(range(12)), 4, b"lora-A") != a


def test_prefix_cache_hits_full_blocks_and_recomputes_the_last_token():
    m = PrefixCachingBlockManager(num_blocks=16, block_size=4)
    prompt = list(range(8))
    assert m.allocate_prompt(0, prompt) == 0
    m.cache_full_blocks(0, prompt)
    m.free(0)
    assert m.allocate_prompt(1, prompt) == 4  # 两块都在缓存里，但最后一个 token 必须重算
    assert m.allocate_prompt(2, prompt + [8, 9, 10]) == 8
    assert m.stats.hit_tokens == 12 and m.stats.queried_tokens == 8 + 8 + 11


def test_lru_eviction_takes_the_tail_of_a_freed_chain_first():
    m = PrefixCachingBlockManager(num_blocks=4, block_size=4)
    a = list(range(17))  # 4 个满块 + 1 个 token → 需要 5 块，放不下
    with pytest.raises(NoFreeBlocks):
        m.allocate_prompt(0, a)
    a = list(range(16))
    m.allocate_prompt(0, a)
    m.cache_full_blocks(0, a)
    m.free(0)  # 4 块带着哈希进入空闲队列，尾块排在最前
    m.allocate_prompt(1, [100 + i for i in range(8)])  # 新请求要 2 块：淘汰 A 的最后两块
    assert m.stats.evictions == 2
    m.free(1)
    assert m.allocate_prompt(2, a) == 8  # A 的前两块还在


def test_prefix_caching_saves_prefill_and_keeps_predictions(model):
    prompts = shared_prefix_prompts(192, 32, 5, model.config.bos_token_id)
    off = prefill_all(model, prompts, 16, caching=False)
    on = prefill_all(model, prompts, 16, caching=True)
    assert [t for *_, t in off] == [t for *_, t in on]
    assert [n for n, *_ in on] == [224] + [32] * 4
    assert sum(s for _, s, _ in on[1:]) < sum(s for _, s, _ in off[1:])


def test_paged_allocation_wastes_less_than_contiguous_reservation():
    reqs = mixed_requests(200, seed=0)
    used, rows = waste_table(reqs, 2048, 512, 16, 65536)
    util = {name: u for name, _, u, _ in rows}
    fit = {name: f for name, _, _, f in rows}
    assert util["paged"] > 0.95 > util["max_tokens"] > util["max_model_len"]
    assert fit["paged"] > fit["max_tokens"] > fit["max_model_len"]
    reserved = {name: r for name, r, _, _ in rows}
    assert reserved["paged"] - used < 16 * len(reqs)  # 每个请求最多浪费最后一块


def test_agent_appending_keeps_the_cache_and_modifying_breaks_it():
    totals = {}
    for strategy in ("append", "modify", "shuffle_tools"):
        rows = agent_prefill_tokens(agent_transcript(20, strategy))
        totals[strategy] = sum(c for _, c in rows)
    assert totals["append"] < totals["modify"] < totals["shuffle_tools"]
    rows = agent_prefill_tokens(agent_transcript(20, "append"))
    for (prev, _), (length, computed) in zip(rows, rows[1:], strict=False):
        assert computed <= length - prev + 16  # 只算新增的部分（加上块对齐的零头）
    with pytest.raises(ValueError):
        agent_transcript(3, "rewrite")


def test_cli_rejects_bad_input(capsys):
    assert_clean_cli_error(main, ["paged", "--block-size", "0"], capsys)
    with pytest.raises(SystemExit, match="未知模型"):
        main(["size", "gpt-5"])
    with pytest.raises(SystemExit, match="超过模型上限"):
        main(["bench", "--max-new-tokens", "600"])
    with pytest.raises(SystemExit, match="没有 config.json"):
        main(["bench", "--model", "/nonexistent"])


def test_steps_command_draws_the_figure(tmp_path, capsys):
    out = tmp_path / "steps.svg"
    main(["steps", "--lengths", "16", "48", "--repeats", "1", "--plot", str(out)])
    assert out.read_text("utf-8").startswith("<?xml") and "图已写入" in capsys.readouterr().out
