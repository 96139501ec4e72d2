"""第 9 章的服务：真起进程、真发 HTTP。并发压测 0 错误、坏请求得到对应的 4xx、断开与超时撤下请求、
优雅退出做完在途请求、贪心输出与逐个生成相同、OpenAI SDK 能直接用。"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from ch06_scheduling.scheduler import SchedulerConfig
from ch09_serving.cli import main, start_process
from ch09_serving.engine import AsyncEngine, SamplingParams
from ch09_serving.loadgen import LoadConfig, run_load, summarize
from ch09_serving.security import RateLimiter
from conftest import assert_clean_cli_error
from prometheus_client.parser import text_string_to_metric_families
from tinyllm.generate import generate
from tinyllm.hf import load_default
from tinyllm.tokenizer import ByteTokenizer

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOK = ByteTokenizer()


def arun(coro):
    """在新线程里跑协程：同一个 pytest 进程里浏览器测试（Playwright 同步 API）的事件循环还开着，
    主线程上不能再调 asyncio.run。"""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server():
    proc, url = start_process("serve", "--api-key", KEY, "--rate", "10000", "--burst", "10000")
    yield url
    stop(proc)


def scrape(url: str) -> dict[str, float]:
    """/metrics → {样本名{标签}: 值}，标签按名字排序。"""
    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def metric(samples: dict[str, float], name: str, **labels) -> float:
    """把同名、且包含给定标签的样本加起来。"""
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(
        v for k, v in samples.items() if k.split("{")[0] == name and all(w in k for w in want)
    )


def test_32_concurrent_clients_hundreds_of_requests_zero_errors(server):
    before = scrape(server)
    cfg = LoadConfig(server, requests=320, concurrency=32, max_tokens=8, api_key=KEY)
    results, wall = arun(run_load(cfg))
    s = summarize(results, wall)
    assert (s.requests, s.errors) == (320, 0), s.errors_by_status
    assert all(r.tokens == 8 for r in results)
    assert s.ttft_ms["p50"] <= s.latency_ms["p50"]
    chat = LoadConfig(server, requests=64, concurrency=32, max_tokens=4, api_key=KEY, chat=True,
                      stream=False)  # fmt: skip
    s2 = summarize(*arun(run_load(chat)))
    assert (s2.requests, s2.errors) == (64, 0)
    after = scrape(server)
    done = "vllm:request_success_total"
    assert metric(after, done, finished_reason="length") - metric(before, done) == 320 + 64
    gen = "vllm:generation_tokens_total"
    assert metric(after, gen) - metric(before, gen) == 320 * 8 + 64 * 4
    assert metric(after, "vllm:time_to_first_token_seconds_count") >= 384
    assert metric(after, "vllm:num_requests_running") == 0
    assert metric(after, "vllm:kv_cache_usage_perc") == 0  # 全部结束，块都还回去了


BAD_REQUESTS = [
    # (说明, 路径, 请求头, 请求体, 期望状态码)
    ("不是 JSON", "/v1/completions", AUTH, b"{not json", 400),
    ("JSON 但不是对象", "/v1/completions", AUTH, b"[1, 2]", 400),
    ("请求体过大", "/v1/completions", AUTH, json.dumps({"prompt": "x" * 70_000}).encode(), 413),
    ("没带密钥", "/v1/completions", {}, b'{"prompt": "hi"}', 401),
    ("密钥错误", "/v1/completions", {"Authorization": "Bearer nope"}, b'{"prompt": "hi"}', 401),
    ("max_tokens 是字符串", "/v1/completions", AUTH, b'{"prompt": "hi", "max_tokens": "8"}', 400),
    ("prompt 是数字", "/v1/completions", AUTH, b'{"prompt": 42}', 400),
    ("缺 prompt", "/v1/completions", AUTH, b'{"max_tokens": 8}', 400),
    ("stream 是字符串", "/v1/completions", AUTH, b'{"prompt": "hi", "stream": "yes"}', 400),
    ("不支持的参数", "/v1/completions", AUTH, b'{"prompt": "hi", "stop": ["."]}', 400),
    ("n = 2", "/v1/completions", AUTH, b'{"prompt": "hi", "n": 2}', 400),
    ("max_tokens 为 0", "/v1/completions", AUTH, b'{"prompt": "hi", "max_tokens": 0}', 400),
    ("max_tokens 过大", "/v1/completions", AUTH, b'{"prompt": "hi", "max_tokens": 5000}', 400),
    ("温度为负", "/v1/completions", AUTH, b'{"prompt": "hi", "temperature": -1}', 400),
    ("提示过长", "/v1/completions", AUTH, json.dumps({"prompt": "x" * 1000}).encode(), 400),
    ("提示加输出超过上下文", "/v1/completions", AUTH,
     json.dumps({"prompt": "x" * 300, "max_tokens": 250}).encode(), 400),
    ("模型不存在", "/v1/completions", AUTH, b'{"prompt": "hi", "model": "gpt-9"}', 404),
    ("messages 为空", "/v1/chat/completions", AUTH, b'{"messages": []}', 400),
    ("角色不对", "/v1/chat/completions", AUTH,
     b'{"messages": [{"role": "robot", "content": "hi"}]}', 400),
    ("content 是列表", "/v1/chat/completions", AUTH,
     b'{"messages": [{"role": "user", "content": [1]}]}', 400),
]  # fmt: skip


def test_bad_requests_get_the_right_4xx_while_serving(server):
    async def main():
        load = asyncio.create_task(
            run_load(LoadConfig(server, requests=96, concurrency=32, max_tokens=8, api_key=KEY))
        )
        got = []
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            for what, path, headers, body, want in BAD_REQUESTS:
                h = headers | {"Content-Type": "application/json"}
                r = await client.post(path, content=body, headers=h)
                got.append((what, r.status_code, want, r.text))
            r = await client.get("/v1/completions", headers=AUTH)
            got.append(("GET 不允许", r.status_code, 405, r.text))
        return got, await load

    got, (results, wall) = arun(main())
    for what, status, want, text in got:
        assert status == want, (what, status, text)
        assert "Traceback" not in text and 'File "' not in text, what
        if want != 405:
            err = json.loads(text)["error"]
            assert err["message"] and err["type"], what
    s = summarize(results, wall)
    assert (s.requests, s.errors) == (96, 0)  # 坏请求没有影响正常请求
    assert httpx.get(f"{server}/health").status_code == 200


def test_greedy_output_equals_one_by_one_generation_and_openai_sdk_works(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key=KEY)
    model = load_default()
    for prompt in ["KV Cache 的作用是", "连续批处理"]:
        want = generate(model, TOK.encode(prompt), 24, stop_id=TOK.eos_token_id)
        r = client.completions.create(model="tinyllm", prompt=prompt, max_tokens=24,
                                      temperature=0)  # fmt: skip
        assert r.choices[0].text == TOK.decode(want)
        assert r.usage.completion_tokens == len(want)
        stream = client.completions.create(model="tinyllm", prompt=prompt, max_tokens=24,
                                           temperature=0, stream=True)  # fmt: skip
        assert "".join(c.choices[0].text for c in stream) == TOK.decode(want)
    chat = client.chat.completions.create(
        model="tinyllm", messages=[{"role": "user", "content": "你好"}], max_tokens=8,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(chat)
    assert chunks[-1].usage.completion_tokens >= 1
    assert [m.id for m in client.models.list()] == ["tinyllm"]


def test_seeded_sampling_is_reproducible(server):
    body = {"prompt": "推理", "max_tokens": 16, "temperature": 1.0, "seed": 7, "ignore_eos": True}
    texts = {httpx.post(f"{server}/v1/completions", json=body, headers=AUTH).json()["choices"][0]
             ["text"] for _ in range(3)}  # fmt: skip
    assert len(texts) == 1


def test_client_disconnect_aborts_the_request_and_frees_kv(server):
    before = metric(scrape(server), "vllm:request_success_total", finished_reason="abort")
    body = {"prompt": "断开", "max_tokens": 200, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, headers=AUTH) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 4:
                break  # 读了几个事件就走
    deadline = time.time() + 10
    while time.time() < deadline:
        m = scrape(server)
        aborted = metric(m, "vllm:request_success_total", finished_reason="abort")
        if aborted > before and metric(m, "vllm:kv_cache_usage_perc") == 0:
            break
        time.sleep(0.1)
    assert aborted == before + 1
    assert metric(m, "vllm:num_requests_running") == 0
    assert metric(m, "vllm:generation_tokens_total") > 0


def test_rate_limit_is_per_key_and_tells_when_to_retry():
    clock = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: clock[0])
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(Exception) as e:
        limiter.check("a")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "1"
    limiter.check("b")  # 另一个密钥有自己的桶
    clock[0] = 0.5  # 半秒补回 1 个
    limiter.check("a")


def test_rate_limit_and_timeout_over_http():
    proc, url = start_process(
        "serve", "--api-key", "k1", "--api-key", "k2", "--rate", "1", "--burst", "3",
        "--inject-delay", "0.05", "--request-timeout", "0.5",
    )  # fmt: skip
    try:
        body = {"prompt": "hi", "max_tokens": 2}
        codes = [
            httpx.post(f"{url}/v1/completions", json=body, headers={"Authorization": "Bearer k1"})
            for _ in range(4)
        ]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        assert int(codes[-1].headers["Retry-After"]) >= 1
        slow = {"prompt": "hi", "max_tokens": 100, "ignore_eos": True}
        r = httpx.post(f"{url}/v1/completions", json=slow, headers={"Authorization": "Bearer k2"},
                       timeout=30)  # fmt: skip
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        time.sleep(0.5)
        assert metric(scrape(url), "vllm:kv_cache_usage_perc") == 0  # 超时的请求被撤下了
    finally:
        stop(proc)


def test_sigterm_drains_in_flight_requests():
    proc, url = start_process("serve", "--inject-delay", "0.02", "--drain-timeout", "20")
    body = {"prompt": "优雅退出", "max_tokens": 40, "stream": True, "ignore_eos": True}

    async def one(client):
        text_events, finish = 0, None
        async with client.stream("POST", "/v1/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    choice = json.loads(line[6:])["choices"][0]
                    text_events += 1
                    finish = choice["finish_reason"] or finish
        return r.status_code, finish

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = [asyncio.create_task(one(client)) for _ in range(8)]
            await asyncio.sleep(0.4)  # 请求已经在生成了
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    try:
        results = arun(main())
        assert results == [(200, "length")] * 8  # 在途的 8 个请求全部完整结束
        # uvicorn 做完优雅退出后把 SIGTERM 重新抛给自己，退出状态就是“被 SIGTERM 结束”
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")
    finally:
        stop(proc)


def test_engine_with_tiny_kv_pool_preempts_but_gives_the_same_tokens():
    """块池小到必然抢占：8 个并发请求的贪心输出仍与逐个生成相同（朴素参照）。"""
    model = load_default()
    prompts = [
        TOK.encode(t) for t in ["甲" * 10, "乙乙", "并发请求", "KV", "调度", "抢占", "块", "池"]
    ]

    async def main():
        engine = AsyncEngine(model, SchedulerConfig(max_num_seqs=8, num_blocks=12, block_size=8))
        await engine.start()

        async def one(p):
            return [t async for t in engine.generate(p, SamplingParams(24))]

        out = await asyncio.gather(*(one(p) for p in prompts))
        await engine.stop()
        return out, engine.scheduler.num_preemptions

    out, preemptions = arun(main())
    assert preemptions > 0
    for p, got in zip(prompts, out, strict=True):
        assert got == generate(model, p, 24)


def test_loadgen_refuses_non_loopback_and_unbounded_runs():
    for url in ["http://8.8.8.8:8000", "ftp://127.0.0.1", "http://10.0.0.1"]:
        with pytest.raises(ValueError):
            LoadConfig(url)
    with pytest.raises(ValueError):
        LoadConfig("http://127.0.0.1:1", requests=0)
    with pytest.raises(ValueError):
        LoadConfig("http://127.0.0.1:1", duration_s=1e9)
    LoadConfig("http://localhost:1")


def test_cli_rejects_bad_arguments(capsys):
    assert_clean_cli_error(main, ["bench", "--concurrency", "0"], capsys)
    assert_clean_cli_error(main, ["router", "--policy", "random", "--backend", "x"], capsys)
    assert_clean_cli_error(main, ["serve", "--rate", "-1"], capsys)
    with pytest.raises(SystemExit) as e:  # 参数合法、值不合法：一行“错误：…”
        main(["bench", "--url", "http://8.8.8.8:1"])
    assert "只允许压测本机回环地址" in str(e.value.code)


def test_full_queue_sheds_load_with_503_and_retry_after():
    proc, url = start_process("serve", "--max-num-seqs", "1", "--max-waiting", "2",
                              "--inject-delay", "0.02")  # fmt: skip
    body = {"prompt": "排队", "max_tokens": 20, "ignore_eos": True}
    try:

        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await asyncio.gather(
                    *(client.post("/v1/completions", json=body) for _ in range(8))
                )

        responses = arun(main())
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 2 and set(codes) == {200, 503}, codes  # 队列容得下的那几个
        shed = [r for r in responses if r.status_code == 503]
        assert all(r.headers["Retry-After"] == "1" for r in shed)
        assert httpx.get(f"{url}/ready").status_code == 200  # 满载不等于不就绪
        m = scrape(url)
        assert metric(m, "vllm:admission_rejections_total") == len(shed)
    finally:
        stop(proc)
