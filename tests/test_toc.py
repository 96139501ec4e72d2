"""目录测试：导航必须遵循 V7.0 目录（tests/data/toc-v7.yml）。

- 每个部分、每一章的标题与目录一致；
- 导航里的每个小节页，H1 是“编号 标题”并与目录一致；
- 章、节的先后顺序与目录一致，且没有重复；
- 尚未写成的小节不出现在导航里，而不是以空页占位。
"""

from __future__ import annotations

import re

import yaml
from conftest import DOCS, ROOT, load_mkdocs_config
from mkdocs.utils.meta import get_data

SECTION_H1 = re.compile(r"^#\s+((?:\d+|[A-C])\.\d+)\s+(.+?)\s*$")
CHAPTER_TITLE = re.compile(r"^第\s*(\d+)\s*章\s*(.+)$")


def norm(text: str) -> str:
    """比较标题时忽略空白：排版规范要求中英文之间加空格，目录数据里没有。"""
    return re.sub(r"\s+", "", text)


def load_toc() -> dict:
    return yaml.safe_load((ROOT / "tests/data/toc-v7.yml").read_text("utf-8"))


def load_nav() -> list:
    return load_mkdocs_config()["nav"]


def toc_sections() -> list[tuple[str, str]]:
    toc = load_toc()
    out = [
        (s["number"], s["title"])
        for part in toc["parts"]
        for ch in part["chapters"]
        for s in ch["sections"]
    ]
    out += [(s["number"], s["title"]) for app in toc["appendices"] for s in app["sections"]]
    return out


def nav_parts() -> list[tuple[str, list]]:
    return [
        (next(iter(e)), e[next(iter(e))])
        for e in load_nav()
        if isinstance(e, dict) and isinstance(next(iter(e.values())), list)
    ]


def nav_pages(entries) -> list[str]:
    pages = []
    for e in entries:
        if isinstance(e, str):
            pages.append(e)
        elif isinstance(e, dict):
            value = next(iter(e.values()))
            pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def h1_line(page: str) -> str:
    """页面正文（去掉 front matter）里的第一个 H1 行。"""
    body, _ = get_data((DOCS / page).read_text("utf-8"))
    match = re.search(r"^#\s+.+$", body, re.M)
    assert match, f"{page} 没有 H1"
    return match.group(0)


def h1_of(page: str) -> str:
    return h1_line(page)[1:].strip()


def test_toc_copy_is_complete():
    toc = load_toc()
    assert len(toc["parts"]) == 4
    assert sum(len(p["chapters"]) for p in toc["parts"]) == 10
    assert [a["letter"] for a in toc["appendices"]] == ["A", "B", "C"]
    assert len(toc_sections()) >= 80


def test_parts_and_chapters_match_toc():
    toc = load_toc()
    toc_parts = {norm(p["title"]): p for p in toc["parts"]}
    for part_title, entries in nav_parts():
        if norm(part_title) not in toc_parts:
            continue  # 前言、附录等不是“部分”
        chapters = toc_parts[norm(part_title)]["chapters"]
        by_number = {c["number"]: c for c in chapters}
        seen = []
        for entry in entries:
            title, value = next(iter(entry.items()))
            m = CHAPTER_TITLE.match(title)
            assert m, f"{part_title} 下的 {title!r} 不是“第 N 章 标题”"
            number = int(m.group(1))
            assert number in by_number, f"第 {number} 章不属于 {part_title}"
            assert norm(m.group(2)) == norm(by_number[number]["title"]), title
            index = next(p for p in nav_pages(value) if p.endswith("index.md"))
            assert norm(h1_of(index)) == norm(title), f"{index} 的 H1 应为 {title}"
            seen.append(number)
        assert seen == sorted(seen) and len(seen) == len(set(seen)), f"{part_title} 章序错误"


SECTION_FILE = re.compile(r"^(\d{2}|[A-C])\.(\d+)-[a-z0-9-]+\.md$")


def section_number_from_file(page: str) -> str | None:
    """小节页按文件名识别：``05.2-kv-cache.md`` -> ``5.2``，``A.1-frameworks.md`` -> ``A.1``。"""
    m = SECTION_FILE.match(page.rsplit("/", 1)[-1])
    if not m:
        return None
    major = m.group(1).lstrip("0") if m.group(1).isdigit() else m.group(1)
    return f"{major}.{m.group(2)}"


def test_section_pages_match_toc_in_order_without_duplicates():
    expected = dict(toc_sections())
    order = [number for number, _ in toc_sections()]
    found = []
    for page in nav_pages(load_nav()):
        number = section_number_from_file(page)
        if number is None:
            continue  # 首页、前言、章首页、回顾页不是小节页
        m = SECTION_H1.match(h1_line(page))
        assert m, f"{page}: H1 必须是“编号 标题”"
        assert m.group(1) == number, f"{page}: H1 编号 {m.group(1)} 与文件名 {number} 不符"
        assert number in expected, f"{page}: 小节 {number} 不在 V7.0 目录里"
        title = m.group(2)
        assert norm(title) == norm(expected[number]), (
            f"{page}: H1 “{number} {title}” 与目录 “{number} {expected[number]}” 不一致"
        )
        found.append(number)
    assert found, "导航里没有小节页"
    assert len(found) == len(set(found)), f"小节重复：{found}"
    positions = [order.index(n) for n in found]
    assert positions == sorted(positions), f"小节顺序与 V7.0 不一致：{found}"


def test_every_docs_page_is_in_nav():
    """没有游离页：docs/ 下的每个 Markdown 页都在导航里（反之由 mkdocs 校验）。"""
    listed = set(nav_pages(load_nav()))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages <= listed, f"未列入导航的页面：{sorted(pages - listed)}"
