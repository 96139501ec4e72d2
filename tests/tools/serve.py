"""在 127.0.0.1 上把构建好的站点挂到子路径下提供服务，行为尽量像 GitHub Pages。

- 站点挂在 ``site_url`` 的路径下（如 ``/llm-inference-optimization/``），子路径下能用才算能用；
- 文本类资源按 ``Accept-Encoding`` 用 gzip 压缩，静态资源带缓存头（GitHub Pages 也这样做）；
- 只监听回环地址，端口由系统分配。

命令行（``make lighthouse`` 之外想手动看看时）::

    python tests/tools/serve.py site/
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import http.server
import threading
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPRESSIBLE = (".html", ".css", ".js", ".json", ".svg", ".xml", ".txt", ".map", ".ipynb")


def site_prefix() -> str:
    """mkdocs.yml 里 ``site_url`` 的路径部分，如 ``/llm-inference-optimization/``。"""
    text = (ROOT / "mkdocs.yml").read_text("utf-8")
    line = next(x for x in text.splitlines() if x.startswith("site_url:"))
    path = urlsplit(yaml.safe_load(line)["site_url"]).path or "/"
    return path if path.endswith("/") else path + "/"


class _Handler(http.server.SimpleHTTPRequestHandler):
    prefix = "/"

    def log_message(self, *args):  # 测试里不要刷屏
        pass

    def translate_path(self, path):
        if not urlsplit(path).path.startswith(self.prefix):
            return str(Path(self.directory) / "__outside_prefix__")
        return super().translate_path("/" + path[len(self.prefix) :])

    def send_head(self):
        if urlsplit(self.path).path == self.prefix.rstrip("/"):
            self.send_response(301)
            self.send_header("Location", self.prefix)
            self.end_headers()
            return None
        path = Path(self.translate_path(self.path))
        if path.is_dir() and not self.path.split("?")[0].endswith("/"):
            return super().send_head()  # 让基类发 301 补斜杠
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            self.send_error(404)
            return None
        body = path.read_bytes()
        gz = path.suffix in COMPRESSIBLE and "gzip" in self.headers.get("Accept-Encoding", "")
        if gz:
            body = gzip.compress(body, compresslevel=6)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(len(body)))
        if gz:
            self.send_header("Content-Encoding", "gzip")
        cache = "no-cache" if path.suffix == ".html" else "public, max-age=600"
        self.send_header("Cache-Control", cache)
        self.end_headers()
        return _Body(body)

    def send_error(self, code, message=None, explain=None):
        # 像 GitHub Pages 一样，找不到的页面返回站点自己的 404.html。
        page = Path(self.directory) / "404.html"
        if code == 404 and page.is_file():
            body = page.read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        super().send_error(code, message, explain)


class _Body:
    """SimpleHTTPRequestHandler 期望 send_head 返回一个可 copyfile 的文件对象。"""

    def __init__(self, data: bytes):
        self._data = data

    def read(self, *_):
        data, self._data = self._data, b""
        return data

    def close(self):
        pass


@contextlib.contextmanager
def serve(site_dir: Path, prefix: str | None = None):
    """在后台线程里提供服务，产出站点首页的 URL（带子路径）。"""
    prefix = prefix or site_prefix()
    handler = functools.partial(
        type("Handler", (_Handler,), {"prefix": prefix}), directory=str(site_dir)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="在 127.0.0.1 的子路径下提供构建好的站点")
    parser.add_argument("site_dir", type=Path, help="mkdocs build 的输出目录")
    args = parser.parse_args(argv)
    if not (args.site_dir / "index.html").is_file():
        parser.error(f"{args.site_dir} 里没有 index.html：先运行 make build")
    with serve(args.site_dir) as url:
        print(f"站点：{url}（Ctrl-C 结束）")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
