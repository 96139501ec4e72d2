"""站点层面的测试：严格构建零警告、中文分词搜索、无外部资源、元数据驱动的代码框。"""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import parse_html


def test_strict_build_has_no_warnings(built_site):
    _, log = built_site
    bad = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR)\b", line)]
    assert not bad, "构建日志里有警告：\n" + "\n".join(bad)


def _search_index(site: Path) -> dict:
    return json.loads((site / "search" / "search_index.json").read_text("utf-8"))


def test_chinese_search_is_segmented_with_jieba(built_site):
    """首页正文“推理成本主要由显存带宽决定”中间的二字词“显存”必须是索引里的独立词。"""
    site, _ = built_site
    index = _search_index(site)
    separator = re.compile(index["config"]["separator"])
    assert index["config"]["lang"] == ["zh"]
    sentence = "主要由显存带宽决定"
    home = [d for d in index["docs"] if d["location"] == "" or d["location"].startswith("#")]
    found = [d for d in home if sentence in d["text"].replace("\u200b", "")]
    assert found, "首页缺少用于分词测试的句子"
    plain = found[0]["text"].replace("\u200b", "")
    tokens = set(separator.split(found[0]["text"]))
    assert "显存" in tokens, "jieba 没有把“显存”切成独立词：中文搜索会找不到它"
    # 反证：不分词时，这个词会埋在一整串汉字里。
    assert "显存" not in set(separator.split(plain))


def test_no_third_party_assets(built_site):
    """字体、公式、图表全部自托管：页面不引用任何外部脚本、样式或字体。"""
    site, _ = built_site
    for html in site.rglob("*.html"):
        soup = parse_html(html)
        for tag, attr in (("script", "src"), ("link", "href"), ("img", "src")):
            for el in soup.find_all(tag):
                url = el.get(attr) or ""
                if tag == "link" and "stylesheet" not in (el.get("rel") or []):
                    continue
                assert not re.match(r"^(https?:)?//", url), f"{html}: 外部资源 {url}"
    assert (site / "assets/vendor/mermaid/mermaid.min.js").is_file()
    assert (site / "assets/vendor/katex/katex.min.js").is_file()


def test_code_box_comes_from_page_metadata(built_site):
    """章节页的“本章代码”框由章节 index.md 的 code_package 驱动，并列出本页嵌入的文件。"""
    site, _ = built_site
    page = site / "ch02-landscape" / "02.2-five-directions" / "index.html"
    soup = parse_html(page)
    box = soup.select_one("aside.book-code-box")
    assert box is not None
    assert "python -m ch02_selector --help" in box.get_text()
    assert any(a["href"].endswith("code/ch02_selector/selector.py") for a in box.find_all("a"))
    # 代码框紧跟在 H1 之后
    assert box.find_previous_sibling("h1") is not None


def test_every_page_has_edit_link_and_description(built_site):
    site, _ = built_site
    for html in site.rglob("index.html"):
        if html.parent.name in ("search",) or html.parent == site / "404":
            continue
        soup = parse_html(html)
        if soup.select_one("article") is None:
            continue
        edit = soup.select_one('a[title="编辑此页"]') or soup.select_one("a.md-content__button")
        assert edit is not None and "/edit/main/docs/" in edit["href"], html
        meta = soup.find("meta", attrs={"name": "description"})
        assert meta and meta["content"], f"{html} 缺少 meta description"


def test_math_and_diagrams_are_marked_for_client_rendering(built_site):
    site, _ = built_site
    pages = [p.read_text("utf-8") for p in site.rglob("index.html")]
    assert any('class="arithmatex"' in p for p in pages), "没有页面含公式"
    assert any('class="book-diagram"' in p for p in pages), "没有页面含 mermaid 图"
