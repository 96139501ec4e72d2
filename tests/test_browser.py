"""浏览器测试：在真实的 chromium 里打开构建好的站点（挂在 site_url 的子路径下）。

- 首页、小节页、笔记本页渲染时控制台没有错误；
- 任何请求都不离开站点自己的源（字体、公式、图表、图标都自托管）；
- 中文搜索：取自句子中间的词能搜到正确的页面；
- 代码框的复制按钮复制的正是从 code/ 嵌入的片段；
- 深浅色切换；公式与 mermaid 图真的渲染出来；
- 离线版从 file:// 打开，搜索可用。

截图存进 test-artifacts/screenshots/，作为测试产物。没有 chromium 时跳过（CI=true 时失败）。
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import ARTIFACTS, ROOT, chromium_path

SHOTS = ARTIFACTS / "screenshots"


class Visit:
    """打开一个页面，并记录控制台错误、页面异常和发往其他源的请求。"""

    def __init__(self, browser, origin: str, **context_args):
        self.context = browser.new_context(**context_args)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.origin = origin
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.context.on("request", self._request)

    def _console(self, msg):
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")

    def _request(self, request):
        url = request.url
        if url.startswith(("data:", "blob:", "about:")):
            return
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(url)

    def goto(self, url: str):
        self.page.goto(url, wait_until="networkidle")
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"))

    def assert_clean(self) -> None:
        assert not self.errors, "控制台有错误：\n" + "\n".join(self.errors)
        assert not self.foreign, "页面请求了站点以外的地址：\n" + "\n".join(self.foreign)

    def close(self) -> None:
        self.context.close()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def visit(browser, site_url):
    opened: list[Visit] = []

    def open_(path: str = "", **context_args) -> Visit:
        v = Visit(browser, origin_of(site_url), **context_args)
        opened.append(v)
        v.goto(site_url + path)
        return v

    yield open_
    for v in opened:
        v.close()


@pytest.mark.parametrize(
    ("name", "path", "selector"),
    [
        ("home", "", "h1"),
        ("section", "ch05-kv-cache/05.2-kv-cache-principle/", "h1"),
        ("notebook", "notebooks/ch05-exercises/", ".jp-Notebook, .jupyter-wrapper"),
    ],
)
def test_page_renders_without_errors(visit, name, path, selector):
    v = visit(path)
    assert v.page.locator(selector).first.is_visible()
    assert v.page.locator(".md-source-file").count() == 1, "页尾缺少“最后更新”日期"
    v.shot(name)
    v.assert_clean()


def search(page, query: str) -> list[str]:
    """在 Material 的搜索框里输入中文查询，返回结果链接（按排名）。"""
    box = page.locator("input.md-search__input")
    if not box.is_visible():  # 窄屏上搜索框藏在按钮后面
        page.locator("label.md-header__button[for='__search']").first.click()
    box.fill(query)
    box.press("End")  # fill() 之后再按一个键，搜索才会触发
    items = page.locator(".md-search-result__item > a.md-search-result__link")
    items.first.wait_for(timeout=15_000)
    return [a.get_attribute("href") for a in items.all()]


def test_chinese_search_finds_a_word_from_mid_sentence(visit):
    # 3.5 节：“……再把产品运回去的运输能力；开销是……”。“运输能力”在句子中间，全书只此一页。
    v = visit("")
    hrefs = search(v.page, "运输能力")
    assert hrefs and "ch03-gpu/03.5-bottlenecks/" in hrefs[0], hrefs
    v.shot("search")
    v.assert_clean()


def snippet_section(path: Path, name: str) -> str:
    """按 pymdownx.snippets 的规则取出 ``# --8<-- [start:name]`` 到 ``[end:name]`` 之间的代码。"""
    lines = path.read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"# --8<-- [start:{name}]")
    end = next(i for i, line in enumerate(lines) if line.strip() == f"# --8<-- [end:{name}]")
    return textwrap.dedent("\n".join(lines[start + 1 : end]))


def test_copy_button_copies_the_embedded_snippet(visit):
    v = visit(
        "ch05-kv-cache/05.3-kv-cache-implementation/",
        permissions=["clipboard-read", "clipboard-write"],
    )
    expected = snippet_section(ROOT / "code/ch05_kv_cache/paged.py", "pool")
    first_line = expected.splitlines()[0]
    block = v.page.locator("div.highlight", has_text=first_line).first
    block.scroll_into_view_if_needed()
    block.hover()
    block.locator("button.md-code__button[data-md-type='copy']").click()
    copied = v.page.evaluate("navigator.clipboard.readText()")
    assert copied.strip() == expected.strip()
    v.assert_clean()


def test_light_dark_toggle(visit):
    v = visit("")
    page = v.page
    scheme = page.evaluate("document.body.getAttribute('data-md-color-scheme')")
    assert scheme == "default"
    light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.locator("form[data-md-component='palette'] label:visible").first.click()
    page.wait_for_function("document.body.getAttribute('data-md-color-scheme') === 'slate'")
    dark_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light_bg != dark_bg
    v.shot("home-dark")
    page.locator("form[data-md-component='palette'] label:visible").first.click()
    page.wait_for_function("document.body.getAttribute('data-md-color-scheme') === 'default'")
    v.assert_clean()


def test_math_and_mermaid_render(visit):
    v = visit("ch05-kv-cache/05.2-kv-cache-principle/")
    page = v.page
    # 公式：进入视口的公式由 KaTeX 排好；其余的按需排版，renderAll()（打印也用它）之后一个不剩。
    math = page.locator(".arithmatex")
    assert math.count() > 0
    first = math.first
    first.scroll_into_view_if_needed()
    first.locator(".katex").first.wait_for()
    page.evaluate("window.bookMath.renderAll()")
    assert page.locator(".arithmatex .katex").count() == math.count()
    # 图：滚到视口里才加载 mermaid；渲染后是 SVG，原始源码不再可见。
    diagram = page.locator(".book-diagram").first
    diagram.scroll_into_view_if_needed()
    diagram.locator("svg").first.wait_for(timeout=20_000)
    assert diagram.locator("svg text, svg foreignObject").count() > 0
    v.shot("math-and-diagram")
    v.assert_clean()


def test_heavy_assets_only_where_used(visit):
    """运行时看：没有公式和图的页面，连动态插入的脚本在内，也不加载 KaTeX 与 mermaid。"""
    v = visit("changelog/")
    scripts = v.page.evaluate("[...document.scripts].map(s => s.src)")
    assert not [s for s in scripts if "katex" in s or "mermaid" in s or "diagrams" in s]
    v.assert_clean()


def test_404_page_under_sub_path(visit, site_url):
    v = visit("no/such/page/")
    assert "404" in v.page.locator("h1").first.inner_text()
    # 深层路径下的 404 页面也要拿到样式表（资源地址不能是相对于错误路径的）。
    assert v.page.evaluate("document.styleSheets.length") > 0
    color = v.page.evaluate("getComputedStyle(document.querySelector('.md-header')).position")
    assert color in ("sticky", "fixed", "relative")
    v.errors = [e for e in v.errors if "404" not in e]  # 页面本身的 404 状态会记一条
    v.assert_clean()


@pytest.fixture(scope="module")
def offline_site(tmp_path_factory):
    chromium_path()
    from offline import build_offline_site

    out = tmp_path_factory.mktemp("offline")
    build_offline_site(out)
    return out


def test_offline_copy_reads_and_searches_from_file_url(browser, offline_site):
    index = offline_site / "index.html"
    v = Visit(browser, "file://")
    try:
        v.page.goto(index.as_uri(), wait_until="load")
        assert re.search("LLM推理优化实战", v.page.title())
        hrefs = search(v.page, "运输能力")
        assert hrefs and "ch03-gpu/03.5-bottlenecks.html" in hrefs[0], hrefs
        v.page.locator(".md-search-result__item > a").first.click()
        v.page.wait_for_load_state("load")
        assert v.page.url.startswith("file://") and "03.5-bottlenecks.html" in v.page.url
        v.shot("offline-search-result")
        v.assert_clean()
    finally:
        v.close()
