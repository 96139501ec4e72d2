"""Lighthouse 门槛：首页与三个章节页，桌面端四项 ≥ 95，移动端性能 ≥ 85、其余三项 ≥ 95。

与 ``make lighthouse`` 是同一段代码（tests/tools/lighthouse.py）；分数表打印在测试输出里，
JSON 报告留在 test-artifacts/lighthouse/。没有 chromium 时跳过（CI=true 时失败）。
"""

from __future__ import annotations

import pytest
from conftest import chromium_path


def test_lighthouse_scores_meet_targets(built_site, capsys):
    chromium_path()
    import lighthouse

    if not lighthouse.LIGHTHOUSE.exists():
        pytest.fail("未找到 tests/js 里的 Lighthouse：make test 会先运行 npm ci --prefix tests/js")
    results = lighthouse.audit(built_site[0])
    with capsys.disabled():
        print()
        for row in results:
            print(lighthouse.format_row(row))
    bad = lighthouse.failures(results)
    assert not bad, "Lighthouse 未达标：\n" + "\n".join(bad)
