"""第 6 章代码：拼接批次等于逐个前向、调度器在抢占/分块下结果不变、各策略的效果方向、PD 建模。"""

from __future__ import annotations

import json

import pytest
import torch
from ch05_kv_cache.naive import forward_full
from ch06_scheduling.cli import main
from ch06_scheduling.engine import Worker, run, summarize
from ch06_scheduling.executor import ModelExecutor, NullExecutor
from ch06_scheduling.pd import (
    Deployment,
    colocated,
    disaggregated,
    kv_transfer_seconds,
    make_worker,
)
from ch06_scheduling.ragged import (
    block_diagonal_causal_mask,
    mixed_step_padding,
    padding_tokens,
    ragged_forward,
)
from ch06_scheduling.scheduler import Scheduler, SchedulerConfig, Sequence, StaticScheduler
from ch06_scheduling.trace import TraceRequest, load_trace, poisson_trace, save_trace
from conftest import ROOT, assert_clean_cli_error
from tinyllm.generate import generate
from tinyllm.hf import load_default


@pytest.fixture(scope="module")
def model():
    return load_default()


def step_cost(batch) -> float:
    """测试用的确定性耗时：每步固定 2 ms + 每个 token（含 padding）0.05 ms。"""
    return 2e-3 + 5e-5 * batch.num_tokens


def small_trace(n=8, seed=1):
    return poisson_trace(n, rate=200.0, seed=seed, prompt_range=(8, 80), output_range=(4, 24))


def run_tiny(model, trace, config, static=False):
    sched = (StaticScheduler if static else Scheduler)(config)
    return run(trace, [Worker("cpu", sched, ModelExecutor(model, sched), step_cost)])


def outputs(result):
    return {s.req.req_id: s.output for s in result.seqs}


def test_block_diagonal_mask_isolates_prompts():
    mask = block_diagonal_causal_mask([3, 2])
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_ragged_batch_equals_running_each_prompt_alone(model):
    prompts = [[256] + list(t.encode()) for t in ("拼接", "ragged batching", "块对角掩码")]
    for got, p in zip(ragged_forward(model, prompts), prompts, strict=True):
        torch.testing.assert_close(got, forward_full(model, p), atol=1e-4, rtol=1e-4)


def test_padding_counts_match_the_formula():
    assert padding_tokens([3, 7]) == 4
    assert mixed_step_padding(8, 100) == 693 == padding_tokens([1] * 7 + [100])
    for b, n in [(2, 5), (4, 33), (16, 2)]:
        assert mixed_step_padding(b, n) == padding_tokens([1] * (b - 1) + [n])


def test_continuous_batching_with_chunking_and_preemption_keeps_greedy_tokens(model):
    trace = small_trace()
    tight = SchedulerConfig(max_num_seqs=6, max_num_batched_tokens=32, num_blocks=14, block_size=8)
    result = run_tiny(model, trace, tight)
    assert result.preemptions > 0  # 块池很紧：一定发生过抢占
    assert max(sum(n for _, n, _ in s.items) for s in result.steps) <= 32
    assert max(len(s.items) for s in result.steps) <= 6
    for req in trace:
        assert outputs(result)[req.req_id] == generate(model, req.prompt, req.max_tokens), (
            req.req_id
        )


@pytest.mark.serial  # 计时比较：不与其他测试进程同时跑
def test_static_and_continuous_agree_on_tokens_and_continuous_wins(model):
    trace = small_trace(10, seed=2)
    config = SchedulerConfig(
        max_num_seqs=4, max_num_batched_tokens=128, num_blocks=64, block_size=8
    )
    static = run_tiny(model, trace, config, static=True)
    cont = run_tiny(model, trace, config)
    assert outputs(static) == outputs(cont)
    s, c = summarize(static), summarize(cont)
    assert s["padded_tokens"] > 0 == c["padded_tokens"]
    assert c["steps"] < s["steps"]
    assert c["throughput"] > s["throughput"]
    assert c["queue_mean"] < s["queue_mean"]


def test_chunked_prefill_splits_long_prompts_and_respects_the_budget():
    trace = [TraceRequest(0, 0.0, list(range(100)), 3), TraceRequest(1, 0.0, list(range(10)), 3)]
    sched = Scheduler(
        SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=32, num_blocks=64, block_size=8)
    )
    result = run(trace, [Worker("w", sched, NullExecutor(), step_cost)])
    prefill_steps = [
        n for st in result.steps for rid, n, phase in st.items if rid == 0 and phase == "prefill"
    ]
    assert prefill_steps == [32, 32, 32, 4]
    assert all(sum(n for _, n, _ in st.items) <= 32 for st in result.steps)


def test_preemption_victim_follows_the_policy():
    def seq(i, priority):
        return Sequence(TraceRequest(i, float(i), [1, 2, 3], 4, priority))

    for policy, expected in (("fcfs", 2), ("priority", 0)):
        s = Scheduler(SchedulerConfig(policy=policy, num_blocks=8, block_size=4))
        s.running = [seq(0, 5), seq(1, 0), seq(2, 1)]
        assert s._pick_victim().req.req_id == expected


def test_priority_and_sjf_change_who_waits():
    trace = poisson_trace(150, 10.0, 0, (256, 4096), (32, 512), vocab=1000, priorities=2)
    results = {}
    for policy in ("fcfs", "priority", "sjf"):
        w = make_worker(Deployment(max_num_seqs=16), "gpu0", "both")
        w.scheduler.config = SchedulerConfig(**{**w.scheduler.config.__dict__, "policy": policy})
        results[policy] = run(trace, [w])

    def mean_ttft(result, priority):
        vals = [s.first_token - s.req.arrival for s in result.seqs if s.req.priority == priority]
        return sum(vals) / len(vals)

    assert mean_ttft(results["priority"], 0) < mean_ttft(results["fcfs"], 0)
    assert mean_ttft(results["priority"], 1) > mean_ttft(results["fcfs"], 1)
    assert summarize(results["sjf"])["ttft_p50"] < summarize(results["fcfs"])["ttft_p50"]


def test_kv_transfer_time_uses_chapter_5_sizes():
    d = Deployment(link_gbps=50.0, link_latency_s=0.002)
    assert kv_transfer_seconds(d, 4096) == pytest.approx(131072 * 4096 / 50e9 + 0.002)


def test_pd_keeps_tpot_flat_but_pays_in_ttft_when_prefill_saturates():
    trace = poisson_trace(150, 14.0, 0, (1024, 8192), (64, 512), vocab=1000)
    colo, pd = (
        summarize(colocated(trace, Deployment(), 2)),
        summarize(disaggregated(trace, Deployment(), 1, 1)),
    )
    assert pd["tpot_p90"] < colo["tpot_p90"]
    assert pd["ttft_p90"] > colo["ttft_p90"]


def test_pd_figure_in_the_book_is_reproduced_byte_for_byte(tmp_path):
    out = tmp_path / "pd.svg"
    main(["pd", "--plot", str(out)])
    assert out.read_bytes() == (ROOT / "docs/assets/figures/ch06-pd-vs-colocated.svg").read_bytes()


def test_trace_is_replayable_and_poisson(tmp_path):
    trace = poisson_trace(2000, 5.0, seed=3)
    gaps = [b.arrival - a.arrival for a, b in zip(trace, trace[1:], strict=False)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 5.0, rel=0.1)
    save_trace(trace[:20], tmp_path / "t.json")
    assert load_trace(tmp_path / "t.json") == trace[:20]
    (tmp_path / "bad.json").write_text(json.dumps([{"req_id": 0}]))
    with pytest.raises(ValueError, match="读不了"):
        load_trace(tmp_path / "bad.json")
    with pytest.raises(ValueError):
        poisson_trace(0, 1.0)


def test_impossible_requests_and_bad_flags_are_clear_errors(capsys):
    too_big = [TraceRequest(0, 0.0, list(range(200)), 8)]
    sched = Scheduler(SchedulerConfig(num_blocks=4, block_size=16))
    with pytest.raises(ValueError, match="整个块池"):
        run(too_big, [Worker("w", sched, NullExecutor(), step_cost)])
    with pytest.raises(ValueError, match="policy"):
        SchedulerConfig(policy="lottery")
    assert_clean_cli_error(main, ["compare", "--max-num-seqs", "0"], capsys)
    with pytest.raises(SystemExit, match="读不了"):
        main(["compare", "--trace", "/nonexistent.json"])
    with pytest.raises(SystemExit, match="没有 config.json"):
        main(["ragged", "--model", "/nonexistent"])
