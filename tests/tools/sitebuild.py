"""一次严格构建：测试、离线版、PDF 与 Lighthouse 共用。"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mkdocs_build(site_dir: Path, **env: str) -> tuple[int, str]:
    """``mkdocs build --strict --site-dir site_dir``，附加环境变量（如 BOOK_PDF="true"）。

    先清掉 mkdocs-jupyter 的缓存：它只按笔记本自身的字节做键，不知道 code/ 变了。
    返回 (退出码, 构建日志)。
    """
    shutil.rmtree(ROOT / ".cache" / "mkdocs-jupyter", ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr
