"""Lighthouse 分数：首页与三个章节页，移动端与桌面端各跑一次，打印四项分数并检查门槛。

站点用 ``mkdocs build --strict`` 构建，由 ``serve.py`` 挂在 site_url 的子路径下、带 gzip 与缓存头
（和 GitHub Pages 一样）提供给 npm 的 Lighthouse（tests/js，版本见 package-lock.json），
浏览器是系统里的 Debian chromium。报告（JSON）写进 test-artifacts/lighthouse/。

    python tests/tools/lighthouse.py              # make lighthouse
    python tests/tools/lighthouse.py --site-dir site --pages ""

门槛：桌面端四项都 ≥ 95；移动端性能 ≥ 85，其余三项 ≥ 95。性能分在同一台机器上也会有几分的
抖动，所以某页性能不达标时再跑两次，取三次的中位数（Lighthouse 文档建议的做法）；共享的虚拟机
偶尔会连续一两分钟都慢，中位数仍不达标时歇 30 秒，重新采一组三次，以这一组为准。
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import CHROMIUM_FLAGS, find_chromium  # noqa: E402
from serve import serve  # noqa: E402
from sitebuild import mkdocs_build  # noqa: E402

LIGHTHOUSE = ROOT / "tests" / "js" / "node_modules" / ".bin" / "lighthouse"
REPORTS = ROOT / "test-artifacts" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
# 首页，以及三个用到了重资源的小节页：公式 + mermaid 图、公式 + 计算器、图 + 计算器。
PAGES = (
    "",
    "ch05-kv-cache/05.2-kv-cache-principle/",
    "ch03-gpu/03.3-vram-formula/",
    "ch08-speculative/08.5-performance/",
)
TARGETS = {
    "desktop": dict.fromkeys(CATEGORIES, 95),
    "mobile": {"performance": 85, "accessibility": 95, "best-practices": 95, "seo": 95},
}


def run_lighthouse(url: str, form: str, report: Path) -> dict[str, int]:
    """跑一次 Lighthouse，返回四项分数（0–100）。"""
    cmd = [
        str(LIGHTHOUSE),
        url,
        "--quiet",
        "--output=json",
        f"--output-path={report}",
        f"--only-categories={','.join(CATEGORIES)}",
        "--chrome-flags=" + " ".join(["--headless=new", *CHROMIUM_FLAGS]),
    ]
    if form == "desktop":
        cmd.append("--preset=desktop")
    env = {**os.environ, "CHROME_PATH": find_chromium() or ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not report.is_file():
        raise RuntimeError(f"Lighthouse 失败（{url}，{form}）：\n{proc.stderr[-2000:]}")
    data = json.loads(report.read_text("utf-8"))
    return {c: round(100 * (data["categories"][c]["score"] or 0)) for c in CATEGORIES}


def audit(site_dir: Path, pages=PAGES, forms=("mobile", "desktop"), log=print) -> list[dict]:
    """对每个页面、每种设备跑 Lighthouse；返回 [{page, form, scores, runs}]。"""
    REPORTS.mkdir(parents=True, exist_ok=True)
    results = []
    with serve(site_dir) as base:
        for page in pages:
            for form in forms:
                name = (page.strip("/").replace("/", "_") or "home") + f"-{form}"
                target = TARGETS[form]["performance"]
                runs = [run_lighthouse(base + page, form, REPORTS / f"{name}.json")]
                sample = runs[:]  # 用来取中位数的这一组
                for attempt in range(2):  # 没达标：补到 3 次取中位数；仍不达标，歇 30 秒重采一组
                    if statistics.median(r["performance"] for r in sample) >= target:
                        break
                    if attempt:  # 共享的虚拟机偶尔整分钟都慢：换个时刻再测，真退化仍会失败
                        time.sleep(30)
                        sample = []
                    while len(sample) < 3:
                        runs.append(
                            run_lighthouse(
                                base + page, form, REPORTS / f"{name}-{len(runs) + 1}.json"
                            )
                        )
                        sample.append(runs[-1])
                scores = {c: int(statistics.median(r[c] for r in sample)) for c in CATEGORIES}
                results.append(
                    {
                        "page": page or "/",
                        "form": form,
                        "scores": scores,
                        "runs": runs,
                        "sample": len(sample),
                    }
                )
                log(format_row(results[-1]))
    return results


def failures(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        for c, score in r["scores"].items():
            if score < TARGETS[r["form"]][c]:
                out.append(f"{r['page']}（{r['form']}）{c} = {score} < {TARGETS[r['form']][c]}")
    return out


def format_row(r: dict) -> str:
    s = r["scores"]
    total = f"，共跑 {len(r['runs'])} 次" if len(r["runs"]) > r["sample"] else ""
    note = f"  （{r['sample']} 次取中位数{total}）" if len(r["runs"]) > 1 else ""
    cells = "  ".join(f"{s[c]:>3}" for c in CATEGORIES)
    return f"{r['page']:<42} {r['form']:<8} {cells}{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="首页与三个章节页的 Lighthouse 四项分数")
    parser.add_argument("--site-dir", type=Path, help="已构建的站点目录（默认现场严格构建一份）")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), help="相对站点根的页面路径")
    args = parser.parse_args(argv)
    if not find_chromium():
        parser.error("未找到 chromium（Debian：apt-get install chromium fonts-noto-cjk）")
    if not LIGHTHOUSE.exists():
        parser.error("未找到 Lighthouse：先运行 npm ci --prefix tests/js（make lighthouse 自动做）")
    header = f"{'页面':<40} {'设备':<6} " + "  ".join(
        ("性能", "无障碍", "最佳实践", "SEO")[i] for i in range(4)
    )
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site_dir
        if site is None:
            print("构建站点……", file=sys.stderr)
            site = Path(tmp)
            code, log = mkdocs_build(site)
            if code != 0:
                parser.error("mkdocs build --strict 失败：\n" + log)
        print(header)
        results = audit(site, args.pages)
    bad = failures(results)
    for line in bad:
        print("未达标：" + line)
    print(f"门槛：桌面四项 ≥ 95；移动端性能 ≥ 85、其余 ≥ 95。报告：{REPORTS.relative_to(ROOT)}/")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
