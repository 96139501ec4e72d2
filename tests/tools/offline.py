"""离线版：构建一份能从 ``file://`` 直接打开的整站副本，打成 zip。

用 Material 的 offline 插件（``BOOK_OFFLINE=true`` 打开，见 mkdocs.yml）：链接改成 ``xxx.html``，
搜索索引内联成脚本，Web Worker 由自托管的 iframe-worker 垫片代替，所以解压后双击
``index.html`` 就能读、能搜。各章代码 zip 不放进离线版（它们在在线站点的 downloads/ 里）。

    python tests/tools/offline.py --out site/downloads/llm-inference-book-offline.zip
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

from sitebuild import mkdocs_build

FOLDER = "llm-inference-book"  # zip 里的顶层目录
ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def build_offline_site(out_dir: Path) -> None:
    """``BOOK_OFFLINE=true mkdocs build --strict``，输出到 out_dir。"""
    code, log = mkdocs_build(out_dir, BOOK_OFFLINE="true")
    if code != 0:
        raise RuntimeError("离线版构建失败：\n" + log)


def pack(site_dir: Path, out: Path) -> int:
    """把离线站点打包；返回文件数。源码映射（*.map）与代码压缩包不放进去。"""
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(site_dir.rglob("*")):
            rel = path.relative_to(site_dir).as_posix()
            if not path.is_file() or rel.startswith("downloads/") or rel.endswith(".map"):
                continue
            info = zipfile.ZipInfo(f"{FOLDER}/{rel}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="构建可从 file:// 打开的离线版并打成 zip")
    parser.add_argument("--out", type=Path, required=True, help="输出的 zip 路径")
    args = parser.parse_args(argv)
    if args.out.suffix != ".zip":
        parser.error("--out 必须是 .zip 文件")
    with tempfile.TemporaryDirectory() as tmp:
        print("构建离线版……", file=sys.stderr)
        build_offline_site(Path(tmp))
        count = pack(Path(tmp), args.out)
    size = args.out.stat().st_size / 2**20
    print(f"离线版：{args.out}（{count} 个文件，{size:.1f} MiB）", file=sys.stderr)


if __name__ == "__main__":
    main()
