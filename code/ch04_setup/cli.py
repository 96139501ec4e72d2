"""``python -m ch04_setup``：环境体检、transformers 推理与基准、vLLM 快速入门、报错诊断。

不带子命令时运行演示：体检 + 用随书小模型做一次单条推理和流式输出。
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from functools import cache
from pathlib import Path

import yaml
from ch02_selector.cli import number

from . import doctor

ERRORS = Path(__file__).parent / "data" / "errors.yml"
REPLACEMENT = "\ufffd"  # 生成长度截断在半个汉字上时，解码出的替换字符不显示


@cache
def known_errors() -> list[dict]:
    return yaml.safe_load(ERRORS.read_text("utf-8"))


# --8<-- [start:explain]
def explain(log: str) -> list[dict]:
    """在一段日志里找已知报错：返回匹配到的条目（原因与修复方法）。"""
    return [e for e in known_errors() if re.search(e["pattern"], log, re.IGNORECASE)]
    # --8<-- [end:explain]


def cmd_doctor(args) -> int:
    checks = doctor.run_all(args.disk_path, args.min_disk_gb, args.host, args.port)
    code = doctor.exit_code(checks)
    if args.json:
        print(
            json.dumps(
                {"exit_code": code, "checks": [asdict(c) for c in checks]},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(doctor.report(checks))
        print(doctor.SUMMARY[code])
    return code


def prompts_of(args) -> list[str]:
    return args.prompt or ["推理优化的第一步是"]


def cmd_generate(args) -> int:
    from .infer import generate_batch, load

    model, tok = load(args.model)
    for prompt, text in zip(
        args.prompt_list,
        generate_batch(model, tok, args.prompt_list, args.max_new_tokens),
        strict=True,
    ):
        print(f"[{prompt}] → {text.rstrip(REPLACEMENT)}")
    return 0


def cmd_stream(args) -> int:
    from .infer import load, stream

    model, tok = load(args.model)
    print(args.prompt_list[0], end="", flush=True)
    for piece in stream(model, tok, args.prompt_list[0], args.max_new_tokens):
        print(piece.rstrip(REPLACEMENT), end="", flush=True)  # 每拿到一段就立刻显示
    print()
    return 0


def cmd_bench(args) -> int:
    from .infer import batch_throughput, bench, load

    model, tok = load(args.model)
    prompt = args.prompt_list[0]
    print(
        f"模型：{args.model}；提示 {len(tok(prompt)['input_ids'])} token，生成 "
        f"{args.max_new_tokens} token，重复 {args.runs} 次取中位数",
        file=sys.stderr,
    )
    r = bench(model, tok, prompt, args.max_new_tokens, args.runs)
    print(
        f"单条请求：TTFT {r.ttft_ms:.1f} ms，TPOT {r.tpot_ms:.2f} ms，{r.tokens_per_s:.0f} token/s"
    )
    for b in args.batch_sizes:
        tps = batch_throughput(model, tok, prompt, b, args.max_new_tokens)
        print(f"批量 {b:>3}：整批 {tps:,.0f} token/s")
    return 0


def cmd_vllm_offline(args) -> int:
    from .vllm_quickstart import offline

    for prompt, text in offline(args.model, args.prompt_list, args.max_new_tokens):
        print(f"[{prompt}] → {text}")
    return 0


def cmd_vllm_chat(args) -> int:
    from .vllm_quickstart import chat

    for piece in chat(
        args.base_url, args.model, args.prompt_list[0], args.api_key, args.max_new_tokens
    ):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_explain(args) -> int:
    log = sys.stdin.read() if args.text == "-" else args.text
    hits = explain(log)
    if not hits:
        print("没有匹配到已知报错。把完整日志里第一条 Error / Traceback 的最后一行贴进来再试。")
        return 1
    for e in hits:
        print(f"匹配：{e['id']}（{e['section']} 节；出处：{e['source']}）")
        print(f"  原因：{e['cause']}")
        print(f"  修复：{e['fix']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tinyllm import DEFAULT_DIR

    p = argparse.ArgumentParser(prog="python -m ch04_setup", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")

    d = sub.add_parser("doctor", help="环境体检（退出码：0 可跑 GPU，1 仅 CPU，3 有阻塞问题）")
    d.add_argument("--port", type=number("端口", integer=True, upper=65535), default=8000)
    d.add_argument("--host", default="127.0.0.1", help="检查端口时绑定的地址")
    d.add_argument(
        "--disk-path",
        type=Path,
        default=Path.home() / ".cache" / "huggingface",
        help="放模型权重的目录（默认 Hugging Face 缓存）",
    )
    d.add_argument("--min-disk-gb", type=number("磁盘下限"), default=50.0)
    d.add_argument("--json", action="store_true", help="输出 JSON")
    d.set_defaults(func=cmd_doctor)

    def gen_args(sp, model_default: str | None, max_new: int = 48):
        sp.add_argument(
            "--model",
            default=model_default,
            required=model_default is None,
            help="HF 模型 id 或本地目录（默认：随书小模型）",
        )
        sp.add_argument("--prompt", action="append", help="提示，可重复给多条")
        sp.add_argument("--max-new-tokens", type=number("生成长度", integer=True), default=max_new)

    for name, fn, helptext in (
        ("generate", cmd_generate, "transformers 单条 / 批量推理（贪心）"),
        ("stream", cmd_stream, "transformers 流式输出（TextIteratorStreamer）"),
        ("bench", cmd_bench, "基准：TTFT、TPOT、单条与批量吞吐"),
    ):
        sp = sub.add_parser(name, help=helptext)
        gen_args(sp, str(DEFAULT_DIR))
        sp.set_defaults(func=fn)
        if name == "bench":
            sp.add_argument("--runs", type=number("次数", integer=True), default=3)
            sp.add_argument(
                "--batch-sizes", type=number("批量", integer=True), nargs="+", default=[1, 4, 16]
            )

    o = sub.add_parser("vllm-offline", help="vLLM 离线推理（需要 NVIDIA GPU 与 vllm）")
    gen_args(o, "Qwen/Qwen3-0.6B")
    o.set_defaults(func=cmd_vllm_offline)
    c = sub.add_parser("vllm-chat", help="用 openai 客户端调用 vllm serve（流式）")
    gen_args(c, "default")
    c.add_argument("--base-url", default="http://localhost:8000/v1")
    c.add_argument("--api-key", default="EMPTY", help="与服务端 --api-key / VLLM_API_KEY 一致")
    c.set_defaults(func=cmd_vllm_chat)

    e = sub.add_parser("explain", help="诊断一段报错日志（- 表示从标准输入读）")
    e.add_argument("text", help="报错文本，或 - 从标准输入读取")
    e.set_defaults(func=cmd_explain)
    return p


def main(argv: list[str] | None = None) -> int:
    from .vllm_quickstart import Unavailable

    p = build_parser()
    args = p.parse_args(argv)
    if args.cmd is None:  # 演示：体检 + 单条 + 流式
        code = cmd_doctor(p.parse_args(["doctor"]))
        print()
        for argv_ in (["generate"], ["stream"]):
            demo = p.parse_args(argv_)
            demo.prompt_list = prompts_of(demo)
            demo.func(demo)
        return 0 if code in (0, 1) else code
    if hasattr(args, "prompt"):
        args.prompt_list = prompts_of(args)
    try:
        return args.func(args)
    except Unavailable as e:
        print(f"{p.prog}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # 输出接到 head 之类的命令上被提前关闭
        return 0
    except (OSError, ValueError) as e:  # 例如 --model 指向不存在的目录
        p.error(str(e).splitlines()[0])
