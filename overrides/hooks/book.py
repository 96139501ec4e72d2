"""站点构建钩子：把“本页代码”框需要的元数据挂到每个页面上。

规则只有两条，都由数据驱动，不需要逐页手写：

1. 章节目录下 ``index.md`` 的 front matter 里写 ``code_package: chNN_xxx``，
   该目录下的每一页都继承它（页面自己写了同名字段则以页面为准）。
2. 页面里每个 ``--8<-- "pkg/file.py:section"`` 片段引用都会被收集到
   ``page.meta["code_files"]``，模板据此列出“本页嵌入的代码文件”。
"""

from __future__ import annotations

import posixpath
import re
from functools import cache
from pathlib import Path

from mkdocs.utils.meta import get_data

SNIPPET_REF = re.compile(r"""^\s*(?:-+8<-+)\s+["']([^"':]+?\.py)(?::[^"']*)?["']""", re.M)


@cache
def _chapter_meta(index_path: str) -> dict:
    path = Path(index_path)
    if not path.is_file():
        return {}
    _, meta = get_data(path.read_text(encoding="utf-8"))
    return meta


def on_page_markdown(markdown, page, config, files):
    src_dir = posixpath.dirname(page.file.src_uri)
    if src_dir and "code_package" not in page.meta:
        index = Path(config["docs_dir"]) / src_dir / "index.md"
        package = _chapter_meta(str(index)).get("code_package")
        if package:
            page.meta["code_package"] = package
    refs = list(dict.fromkeys(SNIPPET_REF.findall(markdown)))
    if refs:
        page.meta["code_files"] = refs
    return markdown
