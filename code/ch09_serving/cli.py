"""``python -m ch09_serving``：起服务、压测、网关、成本、RL 资源分配、插件发现。

不带子命令时运行 ``demo``：在本机起一个服务进程，用负载生成器压一轮，打印结果后退出。
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path

from ch01_economics.cli import count, positive
from ch02_selector.cli import run_subcommand

from . import cost, plugins, rl
from .loadgen import LoadConfig, format_summary, run_load, summarize
from .router import POLICIES

READY_PREFIX = "服务已启动："


def cmd_serve(args: argparse.Namespace) -> None:
    import logging

    from ch06_scheduling.scheduler import SchedulerConfig
    from tinyllm.hf import load_model

    from .faults import FaultPlan, FaultyExecutor
    from .server import ServerSettings, create_app, serve

    keys = tuple(args.api_key or ()) + tuple(
        k for k in os.environ.get("BOOK_API_KEYS", "").split(",") if k
    )
    settings = ServerSettings(
        model_name=args.served_model_name,
        api_keys=keys,
        rate_per_key=args.rate,
        burst_per_key=args.burst,
        max_tokens_limit=args.max_tokens_limit,
        request_timeout_s=args.request_timeout,
        max_waiting=args.max_waiting,
        stall_timeout_s=args.stall_timeout,
    )
    config = SchedulerConfig(max_num_seqs=args.max_num_seqs, num_blocks=args.num_blocks)
    plan = FaultPlan(args.inject_delay, args.inject_fail_from_step, args.inject_exit_at_step)
    wrap = (lambda ex: FaultyExecutor(ex, plan)) if plan.active else None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not keys and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("警告：没有配置 API 密钥，却监听在非本机地址上", file=sys.stderr)
    app = create_app(load_model(args.model), settings, config, wrap)

    def announce(port: int) -> None:
        print(f"{READY_PREFIX}http://{args.host}:{port}", flush=True)

    serve(app, args.host, args.port, args.drain_timeout, announce)


def cmd_router(args: argparse.Namespace) -> None:
    from .router import Router, create_router_app
    from .server import serve

    router = Router(args.backend, args.policy, args.retries)
    app = create_router_app(router, args.health_interval, args.timeout)
    app.state.serving = {"draining": False}

    def announce(port: int) -> None:
        print(f"{READY_PREFIX}http://{args.host}:{port}", flush=True)

    serve(app, args.host, args.port, 10.0, announce)


def start_process(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """起 ``serve`` 或 ``router`` 子进程（端口由系统挑），等它报告地址。测试和 ``demo`` 用它。"""
    code_dir = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [code_dir, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "ch09_serving", *args, "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # 模型加载完、端口绑好之后才会打印这一行
        if line.startswith(READY_PREFIX):
            return proc, line[len(READY_PREFIX) :].strip()
    proc.wait()
    raise OSError(f"服务进程启动失败，退出码 {proc.returncode}")


def load_config(args: argparse.Namespace, url: str) -> LoadConfig:
    return LoadConfig(
        url=url,
        requests=args.requests,
        concurrency=args.concurrency,
        duration_s=args.duration,
        max_tokens=args.max_tokens,
        stream=not args.no_stream,
        chat=args.chat,
        api_key=args.api_key_client,
    )


def cmd_bench(args: argparse.Namespace) -> None:
    cfg = load_config(args, args.url)
    print(format_summary(summarize(*asyncio.run(run_load(cfg)))))


def cmd_demo(args: argparse.Namespace) -> None:
    proc, url = start_process("serve", "--max-num-seqs", str(args.max_num_seqs))
    try:
        cfg = load_config(args, url)
        print(f"服务 {url}（max_num_seqs={args.max_num_seqs}），{cfg.concurrency} 并发：")
        print(format_summary(summarize(*asyncio.run(run_load(cfg)))))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cmd_tune(args: argparse.Namespace) -> None:
    """9.5 节：同一份负载，只改 max_num_seqs，看吞吐和时延怎样此消彼长。

    每档起一个服务，连压 ``--repeat`` 轮，报各项的中位数；吞吐另报最小到最大，看出波动有多大。"""
    print(f"{args.concurrency} 并发、{args.requests} 个请求、每个生成 {args.max_tokens} 个 token，"
          f"每档 {args.repeat} 轮取中位数：")  # fmt: skip
    print("| max_num_seqs | 吞吐 token/s | 吞吐范围 | TTFT p50 | TTFT p95 | 时延 p50 | 时延 p95 |"
          " 错误 |")  # fmt: skip
    print("| --: | --: | --: | --: | --: | --: | --: | --: |")
    for n in args.max_num_seqs:
        proc, url = start_process("serve", "--max-num-seqs", str(n))
        try:
            runs = [summarize(*asyncio.run(run_load(load_config(args, url))))
                    for _ in range(args.repeat)]  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        tput = [s.output_tok_per_s for s in runs]
        ms = [
            statistics.median(getattr(s, field)[q] for s in runs)
            for field in ("ttft_ms", "latency_ms")
            for q in ("p50", "p95")
        ]
        print(f"| {n} | {statistics.median(tput):.0f} | {min(tput):.0f}–{max(tput):.0f} | "
              + " | ".join(f"{v:.0f} ms" for v in ms)
              + f" | {sum(s.errors for s in runs)} |")  # fmt: skip


def add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=count, default=256, help="总请求数（默认 256）")
    p.add_argument("--concurrency", type=count, default=32, help="并发的虚拟用户数（默认 32）")
    p.add_argument("--duration", type=positive, default=120.0, help="总时长上限，秒（默认 120）")
    p.add_argument(
        "--max-tokens", type=count, default=16, help="每个请求生成的 token 数（默认 16）"
    )
    p.add_argument("--no-stream", action="store_true", help="用非流式请求（没有 TTFT）")
    p.add_argument("--chat", action="store_true", help="压 /v1/chat/completions")
    p.add_argument("--api-key", dest="api_key_client", help="服务要求的 API 密钥")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch09_serving",
        description="第 9 章：OpenAI 兼容服务、压测、成本、RL 资源分配、插件发现。",
    )
    sub = p.add_subparsers(dest="cmd")

    s = sub.add_parser("serve", help="起 OpenAI 兼容服务（默认只监听本机）")
    s.add_argument("--model", help="Hugging Face 格式的模型目录；不给则用随书的小模型")
    s.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1）")
    s.add_argument("--port", type=int, default=8000, help="端口，0 表示随机（默认 8000）")
    s.add_argument("--served-model-name", default="tinyllm", help="API 里的模型名")
    s.add_argument("--api-key", action="append", help="允许的密钥，可重复；也读 BOOK_API_KEYS")
    s.add_argument("--rate", type=positive, default=50.0, help="每个密钥每秒请求数（默认 50）")
    s.add_argument("--burst", type=count, default=100, help="每个密钥的突发上限（默认 100）")
    s.add_argument("--max-tokens-limit", type=count, default=256, help="max_tokens 上限")
    s.add_argument("--max-num-seqs", type=count, default=32, help="一批最多几个请求（默认 32）")
    s.add_argument("--num-blocks", type=count, default=1024, help="KV 块数（每块 16 个 token）")
    s.add_argument("--max-waiting", type=count, default=256, help="等待队列上限，满了回 503")
    s.add_argument("--request-timeout", type=positive, default=60.0, help="单个请求的超时，秒")
    s.add_argument("--stall-timeout", type=positive, default=30.0,
                   help="一步前向超过这么多秒，/health 回 503（默认 30）")  # fmt: skip
    s.add_argument("--drain-timeout", type=positive, default=30.0, help="优雅退出最多等几秒")
    g = s.add_argument_group("故障注入（9.9 节）")
    g.add_argument("--inject-delay", type=positive, default=0.0, help="每步额外延迟，秒")
    g.add_argument("--inject-fail-from-step", type=count, help="从第 N 步起前向抛错")
    g.add_argument("--inject-exit-at-step", type=count, help="第 N 步时进程直接退出")
    s.set_defaults(fn=cmd_serve)

    b = sub.add_parser("bench", help="压测一个本机服务")
    b.add_argument("--url", default="http://127.0.0.1:8000", help="服务地址（只允许回环地址）")
    add_load_args(b)
    b.set_defaults(fn=cmd_bench)

    d = sub.add_parser("demo", help="起一个服务进程、压一轮、退出（默认）")
    d.add_argument("--max-num-seqs", type=count, default=32, help="服务一批最多几个请求")
    add_load_args(d)
    d.set_defaults(fn=cmd_demo)

    t = sub.add_parser("tune", help="扫描 max_num_seqs：每档起一个服务、压一轮")
    t.add_argument("--max-num-seqs", type=count, nargs="+", default=[1, 4, 16, 32],
                   help="要试的取值（默认 1 4 16 32）")  # fmt: skip
    t.add_argument("--repeat", type=count, default=3, help="每档压几轮，取中位数（默认 3）")
    add_load_args(t)
    t.set_defaults(fn=cmd_tune)

    r = sub.add_parser("router", help="多副本网关：健康检查、重试、负载均衡")
    r.add_argument("--backend", action="append", required=True, help="副本地址，可重复")
    r.add_argument("--policy", choices=POLICIES, default="least_outstanding", help="选副本的策略")
    r.add_argument("--retries", type=int, default=2, help="失败后最多换几个副本重发（默认 2）")
    r.add_argument("--health-interval", type=positive, default=1.0, help="健康检查间隔，秒")
    r.add_argument("--timeout", type=positive, default=60.0, help="转发超时，秒")
    r.add_argument("--host", default="127.0.0.1", help="监听地址")
    r.add_argument("--port", type=int, default=8080, help="端口，0 表示随机（默认 8080）")
    r.set_defaults(fn=cmd_router)

    cost.add_cli(sub)
    rl.add_cli(sub)
    plugins.add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(build_parser, "demo", argv)
