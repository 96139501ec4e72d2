"""正文里直接写出的 Python 代码块（没有从 code/ 嵌入的）必须能原样运行：读者会复制它们。

只需要 GPU 或 vLLM/SGLang 的代码块跳过（本机没有），其余都在临时目录里作为独立脚本运行。
"""

from __future__ import annotations

import re

import pytest
from conftest import DOCS
from forkrun import run_code

BLOCK = re.compile(r"^( *)```python[^\n]*\n(.*?)^\1```", re.M | re.S)
NEEDS_GPU = re.compile(
    r"^\s*(from|import) (vllm|sglang|modelopt|speculators)\b|device=\"cuda\"", re.M
)


def inline_blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, m in enumerate(BLOCK.finditer(page.read_text("utf-8"))):
            indent = len(m.group(1))
            code = "\n".join(line[indent:] for line in m.group(2).splitlines())
            if "--8<--" not in code:
                out.append((f"{page.relative_to(DOCS)}#{i}", code))
    return out


BLOCKS = inline_blocks()


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_inline_python_block_runs(code, tmp_path):
    if NEEDS_GPU.search(code):
        pytest.skip("需要 GPU 或 vLLM/SGLang")
    _, stderr, returncode = run_code(code, tmp_path)
    assert returncode == 0, stderr[-2000:]
