"""书中展示的每一次命令运行，都必须与代码此刻的真实输出逐字一致。

页面里的 ```console 代码块，若首行是 ``$ python -m chNN_...``，就把它当作一次可复现的运行：
测试执行同一条命令，比较输出（忽略行尾空白）。页面与代码不会悄悄走样。
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from console import DOCS, ROOT, find_runs, normalize, run  # noqa: E402

RUNS = [r for page in sorted(DOCS.rglob("*.md")) for r in find_runs(page)]


def test_book_shows_command_runs():
    assert len(RUNS) >= 5, "书中应当展示各章代码的真实运行"


@pytest.mark.parametrize(
    "r", RUNS, ids=[f"{r.page.relative_to(ROOT).as_posix()}:{r.command[:50]}" for r in RUNS]
)
def test_console_block_matches_real_output(r):
    assert normalize(run(r.command)) == normalize(r.expected), (
        f"{r.page.relative_to(ROOT)}：`{r.command}` 的输出与书中不一致"
        "（确认后可运行 python tests/tools/console.py --write 改写）"
    )
