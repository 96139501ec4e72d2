"""附录 C 的实测结果：逐条运行各章代码包的测量命令，把输出连同运行环境写成 Markdown 片段。

每个片段写到 ``overrides/snippets/results/<name>.md``，
附录 C 的页面用 ``--8<-- "results/<name>.md"`` 嵌入它。
片段开头记录这次运行的机器（CPU 型号、核数、内存）、系统、Python 与各依赖的版本和日期，
所以表里的每个数字都能追到“在哪台机器、哪个版本、用哪条命令”测得。

    python tests/tools/results.py              # 全部重跑（2 核 CPU 上约 10 分钟），即 make results
    python tests/tools/results.py kv-cache     # 只重跑一条
    python tests/tools/results.py --list       # 列出全部条目与命令
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "overrides" / "snippets" / "results"
VERSIONS = ("torch", "transformers", "fastapi", "uvicorn", "triton")

# 名字 → (标题, 命令参数)。命令都在 code/ 下以 ``python -m`` 运行，与正文里的写法相同。
RUNS: dict[str, tuple[str, list[str]]] = {
    "kv-cache": ("KV Cache：朴素重算 vs 缓存（5.6 节）", ["ch05_kv_cache", "bench"]),
    "prefix": ("前缀缓存：共享系统提示（5.4 节）", ["ch05_kv_cache", "prefix"]),
    "scheduling": ("静态批处理 vs 连续批处理（6.3 节）", ["ch06_scheduling", "compare"]),
    "quant-model": ("量化本书模型：显存、logits、困惑度（7.1 节）", ["ch07_quantization", "model"]),
    "speculative": (
        "投机采样：各草稿的接受率与加速（8.5 节）",
        ["ch08_speculative", "sweep", "--proposers", "draft", "eagle", "ngram", "--gamma", "4"],
    ),
    "serving": (
        "在线服务：32 并发下扫描 max_num_seqs（9.5 节）",
        [
            "ch09_serving",
            "tune",
            "--requests",
            "128",
            "--max-tokens",
            "32",
            "--max-num-seqs",
            "1",
            "4",
            "16",
            "32",
        ],
    ),
    "compile": ("torch.compile：解码步（10.5 节）", ["ch10_advanced", "compile"]),
    "fused": ("残差加 + RMSNorm：eager vs 融合（10.7 节）", ["ch10_advanced", "bench-fused"]),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except ImportError:  # pragma: no cover
        return float("nan")


def environment() -> list[str]:
    """一行一项，写进每个片段的开头。"""
    versions = []
    for dist in VERSIONS:
        try:
            versions.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return [
        f"机器：{cpu_model()}，{os.cpu_count()} 个逻辑核，内存 {memory_gib():.0f} GiB，无 GPU",
        f"系统：{platform.system()} {platform.release()}（{platform.machine()}）",
        f"软件：Python {platform.python_version()}，{'，'.join(versions)}",
        f"日期：{dt.date.today().isoformat()}",
    ]


def run(name: str) -> Path:
    title, argv = RUNS[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "code")}
    print(f"[{name}] python -m {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT / "code", env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"{name} 失败（退出码 {proc.returncode}）：\n{proc.stderr}")
    seconds = time.monotonic() - start
    lines = [
        f"**{title}**",
        "",
        *(f"- {item}" for item in environment()),
        f"- 命令：`python -m {' '.join(argv)}`（用时 {seconds:.0f} s）",
        "",
        "```text",
        proc.stdout.rstrip(),
        "```",
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.md"
    path.write_text("\n".join(lines), "utf-8")
    print(f"[{name}] {seconds:.0f} s → {path}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="重新测量附录 C 的结果表")
    p.add_argument("names", nargs="*", help=f"要重跑的条目（默认全部）：{' '.join(RUNS)}")
    p.add_argument("--list", action="store_true", help="只列出条目与命令")
    args = p.parse_args(argv)
    unknown = set(args.names) - set(RUNS)
    if unknown:
        p.error(f"未知条目 {' '.join(sorted(unknown))}；可选：{' '.join(RUNS)}")
    if args.list:
        for name, (title, cmd) in RUNS.items():
            print(f"{name}: python -m {' '.join(cmd)}  # {title}")
        return 0
    for name in args.names or RUNS:
        run(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
