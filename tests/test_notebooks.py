"""练习笔记本能从头跑通，且页面上显示的输出就是此刻代码的输出。"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from notebooks import NOTEBOOK_DIR, execute, text_outputs  # noqa: E402

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_committed_outputs_are_current(path):
    committed = nbformat.read(path, as_version=4)
    fresh = nbformat.read(path, as_version=4)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    execute(fresh)  # 任何单元格报错都会在这里抛出
    assert text_outputs(fresh) == text_outputs(committed), "笔记本输出已过时：运行 make notebooks"
