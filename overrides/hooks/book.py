"""站点构建钩子：页面元数据（“本章代码”框、最后更新日期）、离线版的搜索垫片、紧凑的搜索索引。

“本章代码”框的规则只有两条，都由数据驱动，不需要逐页手写：

1. 章节目录下 ``index.md`` 的 front matter 里写 ``code_package: chNN_xxx``，
   该目录下的每一页都继承它（页面自己写了同名字段则以页面为准）。
2. 页面里每个 ``--8<-- "pkg/file.py:section"`` 片段引用都会被收集到
   ``page.meta["code_files"]``，模板据此列出“本页嵌入的代码文件”。

另外三件事：

3. 每页的“最后更新”日期取自 git：该页源文件最后一次提交的日期（Material 的
   ``page.meta.revision_date`` 会显示在页尾）。不在 git 仓库里构建时不显示。
4. 离线版（``BOOK_OFFLINE=true``，Material 的 offline 插件）需要 iframe-worker 垫片才能在
   ``file://`` 下跑搜索；插件默认从 unpkg 取，这里换成自托管的副本。
5. 搜索索引 ``search/search_index.json`` 被 Material 写成全 ASCII 转义，中文每字 6 字节；
   构建后改写成 UTF-8 原文，体积约小四成，内容不变。
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
from functools import cache
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.utils.meta import get_data

IFRAME_WORKER = "assets/vendor/iframe-worker/shim.js"
_revision_dates: dict[str, str] = {}

SNIPPET_REF = re.compile(r"""^\s*(?:-+8<-+)\s+["']([^"':]+?\.py)(?::[^"']*)?["']""", re.M)


@cache
def _chapter_meta(index_path: str) -> dict:
    path = Path(index_path)
    if not path.is_file():
        return {}
    _, meta = get_data(path.read_text(encoding="utf-8"))
    return meta


def git_revision_dates(docs_dir: Path) -> dict[str, str]:
    """docs 下每个文件最后一次提交的日期（YYYY-MM-DD），键是相对 docs_dir 的路径。"""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=docs_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        log = subprocess.run(
            ["git", "log", "--format=%x00%cs", "--name-only", "--", "."],
            cwd=docs_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    prefix = docs_dir.resolve().relative_to(Path(top).resolve()).as_posix() + "/"
    dates: dict[str, str] = {}
    for commit in log.split("\0")[1:]:
        date, *names = commit.strip().splitlines()
        for name in names:
            if name.startswith(prefix):
                dates.setdefault(name[len(prefix) :], date)  # 日志从新到旧：第一次见到的最新
    return dates


def on_config(config):
    _revision_dates.clear()
    _revision_dates.update(git_revision_dates(Path(config["docs_dir"])))
    offline = config["plugins"].get("material/offline")
    if offline and offline.config.enabled:
        polyfills = [p for p in config.extra.get("polyfills", []) if "iframe-worker" not in str(p)]
        config.extra["polyfills"] = [*polyfills, IFRAME_WORKER]
    return config


def on_page_context(context, page, config, nav):
    date = _revision_dates.get(page.file.src_uri)
    if date:
        page.meta["revision_date"] = date
    return context


@event_priority(-50)  # 在 search 写出索引（0）之后、offline 把它内联成脚本（-100）之前
def on_post_build(config):
    index = Path(config["site_dir"]) / "search" / "search_index.json"
    if index.is_file():
        data = json.loads(index.read_text("utf-8"))
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        index.write_text(text, encoding="utf-8")


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
