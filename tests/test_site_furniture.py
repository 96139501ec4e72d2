"""页面“家具”与发布：最后更新日期、摘要与分享元数据、404、站点地图、版本号、
各章代码下载、离线版压缩包、GitHub Pages 工作流。"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from conftest import DOCS, ROOT, load_mkdocs_config, parse_html
from serve import site_prefix

SITE_URL = load_mkdocs_config()["site_url"]


def article_pages(site: Path) -> list[Path]:
    pages = []
    for html in sorted(site.rglob("index.html")):
        soup = parse_html(html)
        if soup.select_one("article") is not None:
            pages.append(html)
    return pages


def git_date(path: Path) -> str | None:
    out = subprocess.run(
        ["git", "log", "-1", "--format=%cs", "--", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out or None


def test_site_url_has_a_sub_path():
    assert SITE_URL.endswith(site_prefix()) and site_prefix() != "/"


def test_pages_show_last_updated_date_from_git(built_site):
    site, _ = built_site
    checked = 0
    for src in sorted(DOCS.rglob("*.md")):
        expected = git_date(src)
        rel = src.relative_to(DOCS).with_suffix("")
        html = site / (rel.parent if rel.name == "index" else rel) / "index.html"
        if expected is None or not html.is_file():
            continue  # 尚未提交的新页面没有 git 日期
        box = parse_html(html).select_one(".md-source-file")
        assert box is not None and expected in box.get_text(), f"{html}: 应显示 {expected}"
        checked += 1
    assert checked > 50


def test_meta_description_and_social_meta(built_site):
    site, _ = built_site
    for html in article_pages(site):
        soup = parse_html(html)

        def meta(key, soup=soup):
            tag = soup.find("meta", attrs={"property": key}) or soup.find(
                "meta", attrs={"name": key}
            )
            return tag["content"] if tag else None

        assert meta("description"), html
        assert meta("og:title") and meta("og:description") == meta("description"), html
        assert meta("og:url", soup) and meta("og:url").startswith(SITE_URL), html
        assert meta("twitter:card") == "summary", html
        assert meta("og:locale") == "zh_CN"


def test_404_page(built_site):
    site, _ = built_site
    soup = parse_html(site / "404.html")
    assert "404" in soup.h1.get_text()
    hrefs = [a["href"] for a in soup.select("article a")]
    assert SITE_URL in hrefs, "404 页要有回首页的链接（绝对地址：它可能出现在任何深度的路径下）"
    # 资源地址必须不依赖出错的路径深度。
    css = [link["href"] for link in soup.find_all("link", rel="stylesheet")]
    assert css and all(h.startswith(site_prefix()) for h in css), css


def test_sitemap_lists_every_page_under_site_url(built_site):
    site, _ = built_site
    tree = ElementTree.parse(site / "sitemap.xml")
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = {e.text for e in tree.getroot().findall("s:url/s:loc", ns)}
    pages = {
        SITE_URL + html.parent.relative_to(site).as_posix() + "/" for html in article_pages(site)
    }
    pages = {p.replace(SITE_URL + "./", SITE_URL) for p in pages}
    assert pages <= locs, sorted(pages - locs)[:5]
    assert all(loc.startswith(SITE_URL) for loc in locs)


def test_book_version_in_footer_and_changelog(built_site):
    site, _ = built_site
    version = str(load_mkdocs_config()["extra"]["book_version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    changelog = (DOCS / "changelog.md").read_text("utf-8")
    headings = re.findall(r"^## v(\d+\.\d+\.\d+)（(\d{4}-\d{2}-\d{2})）", changelog, re.M)
    assert headings and headings[0][0] == version, "更新日志的第一个版本必须是当前版本"
    for html in article_pages(site)[:20]:
        footer = parse_html(html).select_one(".book-version")
        assert footer is not None and f"v{version}" in footer.get_text(), html


def chapter_openers() -> list[tuple[str, str]]:
    """(章目录, 代码包名)：章节 index.md 的 front matter 里写了 code_package 的章。"""
    out = []
    for index in sorted(DOCS.glob("ch*/index.md")):
        match = re.search(r"^code_package:\s*(\S+)", index.read_text("utf-8"), re.M)
        if match:
            out.append((index.parent.name, match.group(1)))
    return out


def test_every_chapter_opener_links_its_code_zip(built_site):
    site, _ = built_site
    openers = chapter_openers()
    assert len(openers) >= 8
    for chapter, package in openers:
        page = site / chapter / "index.html"
        link = parse_html(page).select_one("a.book-code-box__download")
        assert link is not None, page
        target = (page.parent / link["href"]).resolve()
        assert target == (site / "downloads" / f"{package}.zip").resolve()
        assert target.is_file()


@pytest.mark.parametrize("package", ["ch01_economics", "ch05_kv_cache"])
def test_code_zip_runs_on_its_own(built_site, tmp_path, package):
    site, _ = built_site
    with zipfile.ZipFile(site / "downloads" / f"{package}.zip") as zf:
        names = zf.namelist()
        assert f"{package}/README.md" in names and f"{package}/requirements.txt" in names
        zf.extractall(tmp_path)
    root = tmp_path / package
    readme = (root / "README.md").read_text("utf-8")
    assert f"python -m {package}" in readme and "requirements.txt" in readme
    pins = set((root / "requirements.txt").read_text("utf-8").split())
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert pins and all(f'"{pin}"' in pyproject for pin in pins), pins
    # 在解压目录里运行：当前目录排在 sys.path 最前，用的是压缩包里的代码而不是仓库里的。
    probe = f"import {package}, sys; print({package}.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert where.startswith(str(root)), where
    proc = subprocess.run(
        [sys.executable, "-m", package, "--help"], cwd=root, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr


def test_code_zip_is_reproducible():
    sys.path.insert(0, str(ROOT / "overrides" / "hooks"))
    from downloads import build_zip

    assert build_zip("ch01_economics", "第 1 章") == build_zip("ch01_economics", "第 1 章")


def test_offline_zip_contains_inlined_search(tmp_path):
    from offline import FOLDER, pack

    site = tmp_path / "site"
    (site / "search").mkdir(parents=True)
    (site / "index.html").write_text("<html></html>", "utf-8")
    (site / "search" / "search_index.js").write_text("var __index = {}", "utf-8")
    (site / "downloads").mkdir()
    (site / "downloads" / "ch01_economics.zip").write_bytes(b"PK")
    (site / "bundle.js.map").write_text("{}", "utf-8")
    out = tmp_path / "offline.zip"
    assert pack(site, out) == 2
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == [
            f"{FOLDER}/index.html",
            f"{FOLDER}/search/search_index.js",
        ]


def test_pages_workflow_uses_the_make_target():
    workflow = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text("utf-8"))
    steps = workflow["jobs"]["build"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0, "浅克隆会丢掉“最后更新”日期"
    assert any(s.get("run") == "make build" for s in steps)
    upload = next(s for s in steps if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "site"
    deploy = workflow["jobs"]["deploy"]["steps"]
    assert any("deploy-pages" in s.get("uses", "") for s in deploy)
    assert workflow["permissions"]["pages"] == "write"


def test_heavy_assets_load_only_where_used(built_site):
    """KaTeX 只在有公式的页面、mermaid 加载器只在有图的页面、笔记本样式只在笔记本页面。"""
    site, _ = built_site
    seen = {"math": 0, "diagram": 0, "notebook": 0}
    for html in article_pages(site):
        soup = parse_html(html)
        article = str(soup.select_one("article"))
        scripts = " ".join(s.get("src", "") for s in soup.find_all("script"))
        styles = " ".join(s.get_text() for s in soup.find_all("style"))
        has_math = 'class="arithmatex"' in article
        has_diagram = 'class="book-diagram"' in article
        is_notebook = "notebooks/" in html.relative_to(site).as_posix()
        assert ("katex.min.js" in scripts) == has_math, html
        assert ("diagrams.js" in scripts) == has_diagram, html
        assert "mermaid" not in scripts, f"{html}: mermaid 应由 diagrams.js 按需加载"
        assert (".jp-Notebook" in styles) == is_notebook, html
        seen["math"] += has_math
        seen["diagram"] += has_diagram
        seen["notebook"] += is_notebook
    assert all(seen.values()), seen


def test_footer_downloads_are_what_make_build_writes():
    """页脚的离线版与 PDF 链接，指向的正是 make build 写出的文件（GitHub Pages 发布的就是它）。"""
    footer = (ROOT / "overrides/partials/copyright.html").read_text("utf-8")
    targets = re.findall(r"'(downloads/[^']+)'", footer)
    assert sorted(targets) == [
        "downloads/llm-inference-book-offline.zip",
        "downloads/llm-inference-book.pdf",
    ]
    makefile = (ROOT / "Makefile").read_text("utf-8")
    recipe = makefile.split("\nbuild:", 1)[1].split("\n\n", 1)[0]
    for target in targets:
        assert f"--out site/{target}" in recipe, f"make build 没有生成 {target}"
