"""每个章节代码包：命名规范、可用 ``python -m`` 运行、``--help`` 与演示退出码为 0。"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest
from conftest import ROOT

PACKAGES = sorted(p.name for p in (ROOT / "code").iterdir() if (p / "__init__.py").is_file())


def test_packages_follow_naming_convention():
    assert PACKAGES, "code/ 下没有章节包"
    for name in PACKAGES:
        # 每章一个 chNN_ 包；tinyllm 是各章共用的小模型
        assert name == "tinyllm" or re.fullmatch(r"ch\d\d_[a-z0-9_]+", name), name
        assert (ROOT / "code" / name / "__main__.py").is_file(), f"{name} 缺少 __main__.py"
        assert importlib.import_module(name).__doc__, f"{name} 缺少模块文档字符串"


@pytest.mark.parametrize("name", PACKAGES)
def test_python_m_help_exits_zero(name):
    proc = subprocess.run(
        [sys.executable, "-m", name, "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_each_chapter_opener_names_an_existing_package():
    from mkdocs.utils.meta import get_data

    for index in sorted((ROOT / "docs").glob("ch*/index.md")):
        _, meta = get_data(index.read_text("utf-8"))
        assert meta.get("code_package") in PACKAGES, f"{index}: code_package 不存在"
