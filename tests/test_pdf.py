"""全书 PDF（make pdf）：用 tests/tools/pdf.py 打印一次，再用 pypdf 检查成品。

- 书签分层（部分 > 章），导航里每一章（V7.0 目录里的章名）都在；
- 开头有印出来的目录，每个部分有扉页，每章从新的一页开始；
- 中文能抽出来，且是正常汉字（不是长得一样的康熙部首）；
- 嵌入了中文字体与 KaTeX 字体；
- mermaid 图都画成了图（图里的文字在，图的源码不在）；嵌入的代码整行都在。

pypdf 抽整本书的文字要将近一分钟，所以只抽要查的页：开头几页、各部分与各章的首页、
有图的那些节、嵌入代码的那一节。
"""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
import yaml
from conftest import (
    ARTIFACTS,
    DOCS,
    ROOT,
    assert_clean_cli_error,
    chromium_path,
    load_mkdocs_config,
)

# 首页正文第一句（docs/index.md），检查中文可抽取。
INDEX_SENTENCE = "把一个大模型“跑起来”只需要一条命令"
# 1.1 节嵌入的代码（code/ch01_economics/human.py）里的一整行。
CODE_FILE = ROOT / "code" / "ch01_economics" / "human.py"
CODE_LINE = (
    "def human_tokens_per_day(tokens_per_minute: float = 200.0, hours: float = 8.0) -> float:"
)
CODE_PAGE = "ch01-motivation/01.1-efficiency-revolution.md"
# mermaid 源码的第一行；它出现在 PDF 文字里，说明那张图没画出来。
MERMAID_SOURCE = re.compile(
    r"\b(?:flowchart|graph)\s+(?:TD|TB|BT|LR|RL)\b|sequenceDiagram|stateDiagram|classDiagram"
    r"|\btimeline\s+title\b"
)
FENCE = re.compile(r"^```mermaid\n(.*?)^```", re.M | re.S)
RADICALS = re.compile("[\u2e80-\u2fdf]")


def norm(text: str) -> str:
    """比较时忽略空白：PDF 的文字层按排版折行，目录数据里中英文之间也没有空格。
    再做 NFKC 归一：字体把 fi、fl 排成连字，文字层里是 U+FB01 这样的单个字符。"""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def nav_pages() -> list[str]:
    """导航里按顺序出现的页面（Markdown 与练习笔记本；API 参考页不进 PDF）。"""
    pages: list[str] = []

    def walk(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                walk(value)
            elif value.endswith((".md", ".ipynb")) and not value.startswith("api/"):
                pages.append(value)

    walk(load_mkdocs_config()["nav"])
    return pages


def h1(page: str) -> str:
    """页面的 H1：Markdown 的第一个“# ”行，笔记本第一个 Markdown 单元格里的“# ”行。"""
    text = (DOCS / page).read_text("utf-8")
    if page.endswith(".ipynb"):
        cell = next(c for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
        text = "".join(cell["source"])
    return re.search(r"^#\s+(.+?)\s*$", text, re.M).group(1)


def toc_chapters() -> list[tuple[str, str]]:
    """V7.0 目录里、且已在导航里的章：(部分标题, “第 N 章 标题”)。"""
    toc = yaml.safe_load((ROOT / "tests/data/toc-v7.yml").read_text("utf-8"))
    nav = norm((ROOT / "mkdocs.yml").read_text("utf-8"))
    return [
        (part["title"], f"第 {ch['number']} 章 {ch['title']}")
        for part in toc["parts"]
        for ch in part["chapters"]
        if f"第{ch['number']}章" in nav
    ]


@pytest.fixture(scope="module")
def book(browser):
    """打印一次全书（构建 + 渲染 + 打印，一分多钟），返回 (结果, reader, 扁平书签)。"""
    chromium = chromium_path()
    from pdf import make_pdf
    from pypdf import PdfReader

    result = make_pdf(ARTIFACTS / "book.pdf", chromium=chromium, browser=browser)
    print(f"\n全书 PDF：{result.pages} 页，{result.size / 1e6:.1f} MB，{result.seconds:.0f} s")
    reader = PdfReader(result.path)
    outline: list[tuple[int, str, int]] = []  # (层级, 标题, 页码，从 0 起)

    def walk(items, depth=0):
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                outline.append((depth, item.title, reader.get_destination_page_number(item)))

    walk(reader.outline)
    return result, reader, outline


@pytest.fixture(scope="module")
def starts(book) -> dict[str, int]:
    """导航里每个 Markdown 页的 H1 在 PDF 里的页码（从 0 起）。

    按书签顺序逐个匹配（封面上的书名与首页的 H1 同名），从印出来的目录之后找起。
    """
    _, _, outline = book
    titles = [norm(title) for _, title, _ in outline]
    assert "目录" in titles, "书签里没有印出来的目录"
    position = titles.index("目录")
    found = {}
    for page in nav_pages():
        title = norm(h1(page))
        assert title in titles[position + 1 :], f"书签里没有 {page} 的标题“{h1(page)}”"
        position = titles.index(title, position + 1)
        found[page] = outline[position][2]
    return found


@pytest.fixture(scope="module")
def page_text(book):
    """按需抽取并缓存某一页的文字；页眉页脚（书名、版本、页码）印在每页文字的末尾。"""
    _, reader, _ = book
    cache: dict[int, str] = {}

    def get(index: int) -> str:
        if index not in cache:
            cache[index] = reader.pages[index].extract_text() or ""
        return cache[index]

    return get


def find(outline, title: str, depth: int | None = None) -> tuple[int, str, int]:
    hits = [e for e in outline if norm(e[1]) == norm(title) and depth in (None, e[0])]
    assert hits, f"书签里没有“{title}”" + (f"（层级 {depth}）" if depth is not None else "")
    return hits[0]


def section_pages(starts: dict[str, int], page: str) -> range:
    """导航里某一页在 PDF 里占的页码范围：从它的 H1 所在页到下一页的 H1 所在页。"""
    pages = list(starts)
    index = pages.index(page)
    end = starts[pages[index + 1]] if index + 1 < len(pages) else starts[page] + 20
    return range(starts[page], end + 1)


def test_page_count_and_size(book):
    result, reader, _ = book
    assert result.pages == len(reader.pages) > 100
    assert 1e6 < result.size < 100e6
    assert result.diagrams >= 20 and result.formulas >= 100
    assert reader.pages[0].mediabox.width == pytest.approx(595.92, abs=1)  # A4


def test_outline_has_parts_and_chapters(book):
    _, _, outline = book
    chapters = toc_chapters()
    assert len(chapters) >= 8
    for part, chapter in chapters:
        part_entry = find(outline, part, depth=0)
        chapter_entry = find(outline, chapter, depth=1)
        # 章挂在它所在部分的下面：部分之后、下一个部分之前。
        between = outline[outline.index(part_entry) : outline.index(chapter_entry)]
        assert all(e[0] > 0 for e in between[1:]), f"“{chapter}”没有挂在“{part}”下面"


def test_printed_toc_near_start(book, starts, page_text):
    _, _, outline = book
    toc = find(outline, "目录", depth=0)[2]
    assert toc <= 2, "目录应紧跟封面"
    assert starts["index.md"] - toc <= 6, "目录太长"
    text = norm("".join(page_text(i) for i in range(toc, starts["index.md"])))
    assert text.startswith("目录")
    for _, chapter in toc_chapters():
        assert norm(chapter) in text, f"印出来的目录里没有“{chapter}”"
    assert "代码API参考" not in text  # 正文不收 API 参考页，目录里也不该有空条目


def test_each_part_has_title_page_and_chapter_starts_new_page(book, page_text):
    _, _, outline = book
    for part in dict.fromkeys(p for p, _ in toc_chapters()):
        lines = page_text(find(outline, part, depth=0)[2]).splitlines()
        assert norm(lines[0]) == norm(part)
        assert len(lines) <= 3, f"“{part}”的扉页上还有别的内容：{lines}"
    for _, chapter in toc_chapters():
        index = find(outline, chapter, depth=1)[2]
        first = page_text(index).splitlines()[0]
        assert norm(first) == norm(chapter), f"第 {index + 1} 页不是以“{chapter}”开头：{first}"


def test_chinese_text_is_extractable(starts, page_text):
    assert INDEX_SENTENCE in (DOCS / "index.md").read_text("utf-8")
    start = starts["index.md"]
    text = norm(page_text(start) + page_text(start + 1))
    assert norm(INDEX_SENTENCE) in text
    for index in range(0, start + 2):
        found = RADICALS.findall(page_text(index))
        assert not found, f"第 {index + 1} 页的文字层里有康熙部首 {found[:5]}：复制、搜索会出错"


def test_fonts_embedded(book):
    _, reader, _ = book
    names: set[str] = set()
    for page in reader.pages:
        fonts = page["/Resources"].get_object().get("/Font") or {}
        for ref in fonts.get_object().values():
            font = ref.get_object()
            if "/DescendantFonts" in font:
                font = font["/DescendantFonts"][0].get_object()
            descriptor = font.get("/FontDescriptor")
            descriptor = descriptor.get_object() if descriptor else {}
            embedded = font.get("/Subtype") == "/Type3" or any(
                k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")
            )
            name = str(descriptor.get("/FontName") or font.get("/BaseFont") or "")
            assert embedded, f"字体 {name} 没有嵌入"
            names.add(name.split("+")[-1])
    assert any(re.match(r"Noto(Sans|Serif)CJK", n) for n in names), sorted(names)
    assert {"KaTeX_Main-Regular", "KaTeX_Math-Italic"} <= names, sorted(names)


def test_diagrams_rendered(starts, page_text):
    # pdf.py 在打印前已确认每张图都画成了 SVG（否则报错）；这里抽查每四个有图的节里的一个，
    # 确认纸上是画好的图（图里的文字在、源码不在）。pypdf 抽一页文字约 0.15 s，全查太慢。
    checked = 0
    with_diagrams = [p for p in starts if FENCE.search((DOCS / p).read_text("utf-8"))]
    for page in with_diagrams[::4]:
        sources = FENCE.findall((DOCS / page).read_text("utf-8"))
        text = "\n".join(page_text(i) for i in section_pages(starts, page))
        leaked = MERMAID_SOURCE.findall(text)
        assert not leaked, f"{page}：PDF 里出现了 mermaid 源码 {leaked}，图没有画出来"
        for source in sources:
            label = diagram_label(source)
            assert norm(label) in norm(text), f"{page}：图里的文字“{label}”不在 PDF 里"
            checked += 1
    assert checked >= 5


def diagram_label(source: str) -> str:
    """图里第一个结点（或标题、参与者、状态）的第一行文字。"""
    match = (
        re.search(r'\["([^"]+)"\]', source)
        or re.search(r"^\s*title\s+(.+)$", source, re.M)
        or re.search(r"participant\s+\S+\s+as\s+(.+)", source)
        or re.search(r"-->\s*(\w+)", source)
    )
    assert match, f"认不出这张图的文字：{source[:80]}"
    return re.split(r"<br\s*/?>", match.group(1))[0].strip()


def test_code_line_intact(starts, page_text):
    assert CODE_LINE in CODE_FILE.read_text("utf-8")
    text = "\n".join(page_text(i) for i in section_pages(starts, CODE_PAGE))
    assert norm(CODE_LINE) in norm(text)


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    import pdf

    assert_clean_cli_error(pdf.main, ["--site-dir", str(tmp_path)], capsys)
    monkeypatch.setattr(pdf, "find_chromium", lambda: None)
    assert_clean_cli_error(pdf.main, ["--out", str(tmp_path / "book.pdf")], capsys)
