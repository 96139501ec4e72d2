"""9.9 节的故障场景：两个副本加一个网关，注入故障，看系统是否按页面写的方式降级。

- 副本进程被杀（SIGKILL）：网关把失败的非流式请求重发到另一个副本，客户端 0 错误；被杀的副本被摘除。
- 副本的前向持续出错：这批请求得到 500，网关重发；连续失败 3 步后副本的 /health 变 503。
- 副本变慢：least_outstanding 把新请求更多地分给快的副本；单个请求超时回 504。
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from ch09_serving.cli import start_process
from ch09_serving.loadgen import LoadConfig, run_load, summarize
from ch09_serving.router import Router
from test_ch09_serving import arun, metric, scrape, stop


@pytest.fixture
def procs():
    started = []

    def start(*args):
        proc, url = start_process(*args)
        started.append(proc)
        return proc, url

    yield start
    for p in started:
        stop(p)


def load(url, requests=160, **kw):
    cfg = LoadConfig(url, requests=requests, concurrency=32, max_tokens=16, stream=False, **kw)
    return summarize(*arun(run_load(cfg)))


def router_stats(url):
    m = scrape(url)
    return {k: v for k, v in m.items() if k.startswith("book_router")}


def test_killed_replica_is_retried_elsewhere_with_zero_client_errors(procs):
    a, url_a = procs("serve", "--inject-exit-at-step", "40")  # 第 40 步时进程直接消失
    _, url_b = procs("serve")
    _, gw = procs("router", "--backend", url_a, "--backend", url_b, "--health-interval", "0.2")
    s = load(gw, requests=200)
    assert (s.requests, s.errors) == (200, 0), s.errors_by_status
    assert a.wait(timeout=10) == 137  # 副本 A 确实死了
    m = scrape(gw)
    assert metric(m, "book_router_retries_total") >= 1
    assert metric(m, "book_router_requests_total", outcome="connect_error") >= 1
    assert metric(m, "book_router_healthy_backends") == 1


def test_failing_replica_returns_500_then_declares_itself_dead(procs):
    _, url_a = procs("serve", "--inject-fail-from-step", "30")
    _, url_b = procs("serve")
    # 直接打坏掉的副本：先成功，然后得到 500（带 JSON 错误、不带调用栈），最终 503
    statuses = []
    for _ in range(40):
        r = httpx.post(f"{url_a}/v1/completions", json={"prompt": "hi", "max_tokens": 4},
                       timeout=30)  # fmt: skip
        statuses.append(r.status_code)
        assert "Traceback" not in r.text
    assert statuses[0] == 200 and 500 in statuses and statuses[-1] == 503
    health = httpx.get(f"{url_a}/health")
    assert health.status_code == 503 and "连续 3 步前向失败" in health.json()["reason"]
    # 经过网关：坏副本被健康检查摘掉，客户端看不到错误
    _, gw = procs("router", "--backend", url_a, "--backend", url_b, "--health-interval", "0.2")
    time.sleep(0.6)
    s = load(gw, requests=96)
    assert (s.requests, s.errors) == (96, 0)


@pytest.mark.serial  # 计时比较：不与其他测试进程同时跑
def test_least_outstanding_sends_less_to_a_slow_replica(procs):
    _, slow = procs("serve", "--inject-delay", "0.1")
    _, fast = procs("serve")
    shares = {}
    for policy in ("round_robin", "least_outstanding"):
        gw_proc, gw = procs("router", "--backend", slow, "--backend", fast, "--policy", policy)
        s = load(gw, requests=96)
        assert s.errors == 0
        m = scrape(gw)
        to_slow = metric(m, "book_router_requests_total", backend=slow)
        shares[policy] = (to_slow / metric(m, "book_router_requests_total"), s.wall_s)
        stop(gw_proc)
    assert shares["round_robin"][0] == pytest.approx(0.5, abs=0.05)
    assert shares["least_outstanding"][0] < 0.4
    assert shares["least_outstanding"][1] < shares["round_robin"][1]


def test_no_healthy_backend_is_a_clean_503(procs):
    _, gw = procs("router", "--backend", "http://127.0.0.1:9", "--health-interval", "0.2")
    time.sleep(0.5)
    r = httpx.post(f"{gw}/v1/completions", json={"prompt": "hi"})
    assert r.status_code == 503 and "副本" in r.json()["error"]["message"]
    assert httpx.get(f"{gw}/ready").status_code == 503


def test_router_pick_policies():
    r = Router(["http://a", "http://b"], "least_outstanding")
    a, b = r.backends
    a.outstanding = 3
    assert r.pick(set()) is b
    b.healthy = False
    assert r.pick(set()) is a and r.pick({a}) is None
    rr = Router(["http://a", "http://b"], "round_robin")
    assert [rr.pick(set()).url for _ in range(4)] == ["http://a", "http://b"] * 2
    with pytest.raises(ValueError):
        Router([], "round_robin")
    with pytest.raises(ValueError):
        Router(["http://a"], "random")


def test_sigkill_mid_stream_is_visible_to_the_client(procs):
    """流式响应开始之后副本死掉，网关无法替客户端重试：客户端看到的是被截断的流。"""
    a, url_a = procs("serve", "--inject-delay", "0.02")
    _, gw = procs("router", "--backend", url_a)
    body = {"prompt": "流", "max_tokens": 200, "stream": True, "ignore_eos": True}
    events, done = 0, False
    with pytest.raises(httpx.HTTPError):  # noqa: PT012
        with httpx.stream("POST", f"{gw}/v1/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                events += line.startswith("data: {")
                done |= line == "data: [DONE]"
                if events == 5:
                    a.send_signal(signal.SIGKILL)
    assert 5 <= events < 200 and not done


def test_hung_forward_pass_fails_liveness(procs):
    """前向卡住不会抛异常；/health 看这一步跑了多久，超过 --stall-timeout 就回 503，让 K8s 重启。"""
    _, url = procs("serve", "--inject-delay", "3", "--stall-timeout", "1")

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            job = asyncio.create_task(client.post("/v1/completions", json={"prompt": "卡"}))
            statuses = []
            for _ in range(25):
                await asyncio.sleep(0.1)
                health, ready = await client.get("/health"), await client.get("/ready")
                statuses.append((health.status_code, ready.status_code))
            job.cancel()
            return statuses

    statuses = arun(main())
    assert statuses[0] == (200, 200) and (503, 503) in statuses


def test_when_every_replica_is_full_the_client_still_gets_retry_after(procs):
    full = ("--max-num-seqs", "1", "--max-waiting", "1", "--inject-delay", "0.05")
    _, a = procs("serve", *full)
    _, b = procs("serve", *full)
    _, gw = procs("router", "--backend", a, "--backend", b)
    body = {"prompt": "满", "max_tokens": 20, "ignore_eos": True}

    async def main():
        async with httpx.AsyncClient(base_url=gw, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/completions", json=body)
                                          for _ in range(12)))  # fmt: skip

    responses = arun(main())
    shed = [r for r in responses if r.status_code == 503]
    assert shed and len(shed) < 12
    assert all(r.headers.get("Retry-After") == "1" for r in shed)  # 副本的提示原样传到客户端
    assert metric(scrape(gw), "book_router_retries_total") >= 1  # 先换过副本
