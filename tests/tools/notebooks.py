"""练习笔记本：从源码（本文件里的单元格列表）生成 .ipynb，执行并写回输出。

    python tests/tools/notebooks.py --write   # make notebooks 调用它
    python tests/tools/notebooks.py --write docs/notebooks/ch07-exercises.ipynb  # 只执行一本

测试（tests/test_notebooks.py）重新执行仓库里的笔记本，比较文本输出与提交的是否一致。
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "docs" / "notebooks"


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    return nb


def text_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """每个代码单元的文本输出（stream 与 text/plain），用来比较两次执行是否一致。

    标了 ``varies`` 标签的单元（输出里有随机端口、墙钟耗时）只要求跑通，不比较输出。"""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "varies" in cell.get("metadata", {}).get("tags", []):
            out.append("")
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                parts.append(o.text)
            elif "data" in o and "text/plain" in o.data and "image/png" not in o.data:
                parts.append(o.data["text/plain"])
        out.append("".join(parts))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="执行并把输出写回 .ipynb")
    parser.add_argument("paths", nargs="*", type=Path, help="只处理这些笔记本（默认全部）")
    args = parser.parse_args(argv)
    for path in [p.resolve() for p in args.paths] or sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        execute(nb)
        if args.write:
            nbformat.write(nb, path)
        print(f"{'已执行并写回' if args.write else '已执行'} {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
