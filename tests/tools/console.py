"""书中 ```console 代码块与代码真实输出的对照。

首行为 ``$ python -m chNN_...`` 的 console 块视为一次可复现的运行；
``tests/test_doc_commands.py`` 逐字比较，``--write`` 用当前输出改写页面（只在改了输出格式时用，
改写后要重读正文里引用这些数字的句子）。

    python tests/tools/console.py --write docs/ch01-motivation
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from forkrun import run_module

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```console[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
COMMAND = re.compile(r"\$ python -m ch\d\d_")


@dataclass(frozen=True)
class ConsoleRun:
    page: Path
    command: str  # 不含 "$ "
    expected: str  # 页面里写的输出
    span: tuple[int, int]  # 输出在页面文本中的位置
    indent: str


def find_runs(page: Path) -> list[ConsoleRun]:
    text = page.read_text("utf-8")
    runs = []
    for block in BLOCK.finditer(text):
        indent = block.group("indent")
        lines = [line[len(indent) :] for line in block.group("body").splitlines()]
        if not lines or not COMMAND.match(lines[0]):
            continue
        if any(line.startswith("$ ") for line in lines[1:]):
            raise ValueError(f"{page}: 一个 console 块只放一条命令：{lines[0]}")
        start = block.start("body") + len(block.group("body").split("\n", 1)[0]) + 1
        runs.append(
            ConsoleRun(page, lines[0][2:], "\n".join(lines[1:]), (start, block.end("body")), indent)
        )
    return runs


def run(command: str) -> str:
    argv = shlex.split(command)
    if argv[0] != "python":
        raise ValueError(f"只支持 python -m 命令：{command}")
    if argv[1:2] == ["-m"] and len(argv) > 2:
        stdout, stderr, _ = run_module(argv[2], argv[3:])
        return (stdout + stderr).rstrip("\n")
    proc = subprocess.run(
        [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return (proc.stdout + proc.stderr).rstrip("\n")


def normalize(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def rewrite(page: Path) -> int:
    text = page.read_text("utf-8")
    changed = 0
    for r in reversed(find_runs(page)):
        actual = run(r.command)
        if normalize(actual) == normalize(r.expected):
            continue
        body = "".join(f"{r.indent}{line}\n" if line else "\n" for line in actual.splitlines())
        text = text[: r.span[0]] + body + text[r.span[1] :]
        changed += 1
    page.write_text(text, "utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, default=[DOCS])
    parser.add_argument("--write", action="store_true", help="用真实输出改写页面")
    args = parser.parse_args(argv)
    args.paths = [p.resolve() for p in args.paths]
    pages = sorted(
        p for path in args.paths for p in ([path] if path.is_file() else path.rglob("*.md"))
    )
    for page in pages:
        if args.write:
            n = rewrite(page)
            if n:
                print(f"{page.relative_to(ROOT)}: 改写了 {n} 处输出")
        else:
            for r in find_runs(page):
                ok = normalize(run(r.command)) == normalize(r.expected)
                print(f"{'ok ' if ok else 'DIFF'} {page.relative_to(ROOT)}: {r.command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
