"""测试共用的夹具：仓库路径、一次严格构建的站点、在子路径下提供服务的站点和浏览器。"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

# 第 10 章的 Triton 测试在 CPU 上用解释器跑；解释器模式要在 triton 第一次被导入之前打开，
# 而同一进程里别的测试（用 torch 优化器的）会顺带导入 triton。CUDA 机器上不设。
import torch  # noqa: E402
import yaml

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# 浏览器测试的截图、Lighthouse 报告与 PDF 留在这里，作为测试产物（不入库）。
ARTIFACTS = ROOT / "test-artifacts"

sys.path.insert(0, str(ROOT / "tests" / "tools"))
# 浏览器开关与 tests/tools 下的脚本（PDF 等）共用一份。
from browser import CHROMIUM_FLAGS, find_chromium  # noqa: E402
from sitebuild import mkdocs_build  # noqa: E402

NO_BROWSER = (
    "未找到 chromium：跳过浏览器、Lighthouse 与 PDF 测试"
    "（Debian 上 apt-get install chromium fonts-noto-cjk）"
)


class _ConfigLoader(yaml.SafeLoader):
    """mkdocs.yml 里有 !!python 与 !ENV 标签；测试只读结构，把这些标签读成 None。"""


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
_ConfigLoader.add_constructor("!ENV", lambda *_: None)


@functools.cache
def _parse_html(path: str, mtime_ns: int):
    from bs4 import BeautifulSoup

    return BeautifulSoup(Path(path).read_text("utf-8"), "html.parser")


def parse_html(path: Path):
    """解析一个构建出的 HTML 页面（整个测试会话里每个文件只解析一次；调用方只读不改）。"""
    return _parse_html(str(path), path.stat().st_mtime_ns)


def load_mkdocs_config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text("utf-8"), Loader=_ConfigLoader)


def require_tool(path: str | None, missing: str) -> str:
    """有这个外部工具就返回它的路径；没有时跳过测试，但 ``CI=true`` 时判为失败，绝不静默跳过。"""
    if path:
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true 时这项测试不能跳过：" + missing, pytrace=False)
    pytest.skip(missing)


def chromium_path() -> str:
    """chromium 的路径（浏览器、Lighthouse 与 PDF 测试用）。"""
    return require_tool(find_chromium(), NO_BROWSER)


SITE_FIXTURES = {"built_site", "site_url", "browser", "offline_site", "book"}


def pytest_collection_modifyitems(items):
    """并行（pytest -n）时，用到构建站点或浏览器的测试都归到同一个 worker：站点只构建一次，
    浏览器只启动一次，mkdocs-jupyter 的缓存目录也不会被两个构建同时删改。"""
    for item in items:
        if SITE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("site"))


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> tuple[Path, str]:
    """用 ``mkdocs build --strict`` 构建一次站点，返回 (输出目录, 构建日志)。"""
    out = tmp_path_factory.mktemp("site")
    code, log = mkdocs_build(out)
    assert code == 0, f"mkdocs build --strict 失败：\n{log}"
    return out, log


@pytest.fixture(scope="session")
def site_url(built_site):
    """在 127.0.0.1 上、``site_url`` 的子路径下提供构建好的站点，产出首页 URL。"""
    from serve import serve

    with serve(built_site[0]) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Playwright 驱动系统里的 chromium（不下载浏览器）。"""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def assert_clean_cli_error(main, argv: list[str], capsys) -> None:
    """坏输入：退出码 2、一行 ``error:`` 说明，绝不出现 Python 调用栈。"""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
