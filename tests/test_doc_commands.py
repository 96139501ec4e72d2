"""书中展示的每一次命令运行，都必须与代码此刻的真实输出逐字一致。

页面里的 ```console 代码块，若首行是 ``$ python -m chNN_...``，就把它当作一次可复现的运行：
测试执行同一条命令，比较输出（忽略行尾空白）。页面与代码不会悄悄走样。
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from conftest import DOCS, ROOT

BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```console[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)


def console_runs():
    for page in sorted(DOCS.rglob("*.md")):
        for block in BLOCK.finditer(page.read_text("utf-8")):
            indent = len(block.group("indent"))
            lines = [line[indent:] for line in block.group("body").splitlines()]
            if not lines or not re.match(r"\$ python -m ch\d\d_", lines[0]):
                continue
            assert not any(line.startswith("$ ") for line in lines[1:]), (
                f"{page}: 一个 console 块只放一条命令"
            )
            rel = page.relative_to(ROOT).as_posix()
            yield pytest.param(lines[0][2:], "\n".join(lines[1:]), id=f"{rel}:{lines[0][2:60]}")


RUNS = list(console_runs())


def test_book_shows_command_runs():
    assert len(RUNS) >= 5, "书中应当展示各章代码的真实运行"


@pytest.mark.parametrize(("command", "expected"), RUNS)
def test_console_block_matches_real_output(command, expected):
    argv = shlex.split(command)
    assert argv[0] == "python"
    proc = subprocess.run(
        [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    actual = (proc.stdout + proc.stderr).rstrip("\n")

    def clean(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip("\n").splitlines()]

    assert clean(actual) == clean(expected), f"`{command}` 的输出与书中不一致"
