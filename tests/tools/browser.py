"""测试与工具脚本共用的浏览器设置：tests/conftest.py 与 tests/tools/pdf.py 都从这里取。"""

from __future__ import annotations

import shutil

# Debian 的 chromium；无沙箱是因为 CI 以 root 运行，其余开关让它不去连外网（本机网络是封闭的）。
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """系统里 chromium 的路径；没有时返回 None。

    依次找 Debian 的 ``chromium``、其他发行版的 ``chromium-browser``，以及 GitHub Actions
    的 Ubuntu 镜像预装的 ``google-chrome``（Ubuntu 的 chromium 包只是 snap 的壳，在 CI 里不能用）。
    """
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None
