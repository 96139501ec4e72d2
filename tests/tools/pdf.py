"""把全书打印成一份 PDF（``make pdf``）：严格构建打印版站点，用 headless chromium 打印全书页。

1. ``BOOK_PDF=true mkdocs build --strict`` 构建到临时目录：print-site 插件生成 ``print_page/``
   （封面、目录、全部正文；API 参考页不收）；
2. 在 127.0.0.1 的子路径下提供服务（与测试同一个 ``serve``），用 Playwright 驱动系统的 chromium；
3. 展开折叠块，等全部 mermaid 图画成 SVG、全部公式由 KaTeX 排好、图片与字体加载完；
4. 打印成 A4：分层书签（部分 > 章 > 节）、结构标签，页眉是书名与版本，页脚是页码；
5. 修正文字层里被映射成康熙部首的汉字（见 ``RADICALS``），复制、搜索中文才对。

版式（分页、封面、目录、代码折行）在 ``docs/assets/stylesheets/book.css`` 的 ``@media print`` 里。

用法::

    python tests/tools/pdf.py --out build/book.pdf
    python tests/tools/pdf.py --site-dir DIR --out build/book.pdf   # 复用已有的 BOOK_PDF=true 构建

没有 chromium 时给出一行错误、退出码 2。
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml
from browser import CHROMIUM_FLAGS, find_chromium
from serve import serve
from sitebuild import mkdocs_build

ROOT = Path(__file__).resolve().parents[2]
PRINT_PAGE = "print_page/"
# 渲染全部图与公式的上限：全书约 30 张图、900 个公式，正常十秒内完成。
RENDER_TIMEOUT_MS = 120_000

# 返回还差什么（空串即全部就绪），便于报错。公式与图都是进入视口才排（katex-init.js、
# diagrams.js），各自提供 renderAll()；公式的 renderAll 要等 Material 的 document$ 发出后才有事做，
# 所以每次检查前都再调一次（重复调用无副作用）。
READY_JS = """() => {
  if (window.bookMath) window.bookMath.renderAll();
  const missing = [];
  const diagrams = [...document.querySelectorAll(".book-diagram")];
  const undrawn = diagrams.filter((d) => !d.querySelector("svg")).length;
  if (undrawn) missing.push(`${undrawn}/${diagrams.length} 张图未渲染`);
  const math = [...document.querySelectorAll(".arithmatex")];
  const raw = math.filter((m) => !m.querySelector(".katex")).length;
  if (raw) missing.push(`${raw}/${math.length} 个公式未渲染`);
  const images = [...document.images].filter((i) => !i.complete).length;
  if (images) missing.push(`${images} 张图片未加载`);
  if (document.fonts.status !== "loaded") missing.push("字体未加载完");
  return missing.join("，");
}"""

# 折叠块（练习的参考答案等）在纸上要展开；在画图之前做，图才按展开后的宽度排。
OPEN_DETAILS_JS = """() => {
  document.querySelectorAll("#print-site-page details").forEach((d) => { d.open = true; });
}"""
RENDER_JS = """async () => {
  if (window.bookMath) window.bookMath.renderAll();
  if (window.bookDiagrams) await window.bookDiagrams.renderAll();
  await document.fonts.ready;
}"""
COUNT_JS = """() => [document.querySelectorAll(".book-diagram svg").length,
                document.querySelectorAll(".arithmatex .katex").length]"""
# 给标题标上 aria-level，chromium 按它生成分层的 PDF 书签：部分 > 章 > 节 > 小节
# （网页里每页都从 H1 起，合成一本书后要按所在层级降级）。
OUTLINE_JS = """() => {
  const sectionsAbove = (el) => {
    let n = 0;
    for (let s = el.parentElement?.closest("section.md-section"); s;
         s = s.parentElement?.closest("section.md-section")) n++;
    return n;
  };
  for (const h of document.querySelectorAll("#print-site-page :is(h1, h2, h3, h4, h5, h6)")) {
    const page = h.closest("section.print-page");
    if (!page) continue;
    let offset = sectionsAbove(page);
    // 章的 section 自己的 H1 在打印样式里隐藏（book.css），由该章第一页（index.md）顶替它的层级。
    const parent = page.parentElement;
    const chapter = parent?.matches("#print-site-page > section.md-section > section.md-section");
    if (chapter && page.previousElementSibling?.tagName === "H1") offset--;
    h.setAttribute("aria-level", String(offset + Number(h.tagName[1])));
  }
}"""

# 页眉页脚由 chromium 单独排版：字号、字体都要写明（默认字号近乎不可见）。
HEADER = (
    '<div style="width:100%;margin:0 16mm;font-size:8px;color:#888;'
    "font-family:'Noto Sans CJK SC',sans-serif;display:flex;justify-content:space-between\">"
    "<span>{title}</span><span>{version}</span></div>"
)
FOOTER = (
    '<div style="width:100%;font-size:8px;color:#888;text-align:center;'
    "font-family:'Noto Sans CJK SC',sans-serif\">"
    '第 <span class="pageNumber"></span> 页 / 共 <span class="totalPages"></span> 页</div>'
)
# 页边距与 book.css 里 @media print 的 @page 一致。
MARGIN = {"top": "18mm", "bottom": "18mm", "left": "16mm", "right": "16mm"}
# 交互计算器的脚本在全书页上不加载：print-site 给表单字段的 name 加了页面前缀，脚本找不到字段，
# 会把构建时写好的默认结果换成“请填写……”。纸上本来就只需要默认值和它的结果。
BLOCKED_SCRIPTS = "**/assets/javascripts/calculators.js"
# print-site 2.9 给标题的 id 加页面前缀时，用的是整段标签文本的字符串替换：id 恰好是标题级别的数字时
# （笔记本里“# 第 1 章 ……”被 nbconvert 转成 <h1 id="1">），标签名也被替换，成了
# <hnotebooks-ch01-exercises-1 id="notebooks-ch01-exercises-1">，标题不再是标题、也进不了书签。
# 打开全书页时把这种标签改回来。
MANGLED_HEADING = re.compile(r'<h(?P<id>[^\s>"]+-(?P<level>[1-6])) id="(?P=id)"')

# chromium（Skia）按字体的 cmap 反查每个字形的 Unicode，一个字形有多个码位时取最小的那个。
# Noto CJK 里康熙部首（U+2F00–2FDF）、CJK 部首补充（U+2E80–2EFF）与常用汉字共用字形，
# 于是 PDF 文字层里的“一”“用”“门”成了“⼀”“⽤”“⻔”：看着一样，复制、搜索却不对。
# 打印后把 ToUnicode 表里的部首改回汉字：康熙部首按 NFKC；下表是 NFKC 不管、
# 或与简体字形不符（⼾ → 户，而非 戶）的部分，由 Noto Sans/Serif CJK SC 的 cmap 里
# 与部首共用字形的汉字得出。
_RADICAL_PAIRS = (
    "⺂乛⺃乚⺅亻⺇𠘨⺉刂⺋㔾⺍𭕄⺎兀⺏尣⺐尢⺒巳⺓幺⺔彑⺕彐⺖忄⺘扌⺙攵⺛旡"
    "⺞歺⺠民⺡氵⺣灬⺤爫⺦丬⺨犭⺩𤣩⺫罒⺭礻⺮𥫗⺯糹⺰纟⺱罓⺲罒⺳㓁⺹耂⺺肀"
    "⺽𦥑⺾艹⻁虎⻂衤⻃覀⻅见⻆角⻇𧢲⻈讠⻉贝⻊𧾷⻋车⻌辶⻐钅⻑長⻒镸⻓长⻔门"
    "⻕𨸏⻖阝⻘青⻙韦⻚页⻛风⻜飞⻝食⻞𩙿⻟飠⻠饣⻡𩠐⻢马⻣骨⻤鬼⻥鱼⻦鸟⻧卤"
    "⻨麦⻩黄⻪黾⻫斉⻬齐⻮齿⻯竜⻰龙⻱龜⻲亀⼾户"
)
RADICALS = {_RADICAL_PAIRS[i]: _RADICAL_PAIRS[i + 1] for i in range(0, len(_RADICAL_PAIRS), 2)}
_CMAP_SECTION = re.compile(rb"\d+\s+begin(bfchar|bfrange)(.*?)end\1", re.S)
_CMAP_CHAR = re.compile(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>")
_CMAP_RANGE = re.compile(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(<[0-9A-Fa-f]+>|\[[^\]]*\])")
_RADICAL_HEX = re.compile(rb"<(?:[0-9A-Fa-f]{4})*2[EeFf][0-9A-Fa-f]{2}", re.S)


def unify_char(ch: str) -> str:
    """部首 → 与它共用字形的汉字；其他字符原样返回。"""
    if 0x2E80 <= ord(ch) <= 0x2FDF:
        return RADICALS.get(ch) or unicodedata.normalize("NFKC", ch)
    return ch


def _utf16(hexdigits: bytes) -> str:
    return bytes.fromhex(hexdigits.decode()).decode("utf-16-be", errors="replace")


def fix_cmap(data: bytes) -> bytes | None:
    """改写一个 ToUnicode CMap，把映射到部首的字形改成映射到汉字；无需改动时返回 None。"""
    if not _RADICAL_HEX.search(data):
        return None
    mapping: dict[bytes, str] = {}
    for kind, body in _CMAP_SECTION.findall(data):
        if kind == b"bfchar":
            for src, dst in _CMAP_CHAR.findall(body):
                mapping[src.upper()] = _utf16(dst)
            continue
        for lo, hi, dst in _CMAP_RANGE.findall(body):
            start, width = int(lo, 16), len(lo)
            if dst.startswith(b"["):
                targets = [_utf16(d) for d in re.findall(rb"<([0-9A-Fa-f]+)>", dst)]
            else:
                base = _utf16(dst[1:-1])
                count = int(hi, 16) - start + 1
                targets = [base[:-1] + chr(ord(base[-1]) + i) for i in range(count)]
            for i, text in enumerate(targets):
                mapping[format(start + i, f"0{width}X").encode()] = text
    fixed = {src: "".join(map(unify_char, text)) for src, text in mapping.items()}
    if fixed == mapping:
        return None
    entries = [
        b"<%s> <%s>" % (src, text.encode("utf-16-be").hex().upper().encode())
        for src, text in fixed.items()
    ]
    blocks = b"".join(
        b"%d beginbfchar\n%s\nendbfchar\n" % (len(chunk), b"\n".join(chunk))
        for chunk in (entries[i : i + 100] for i in range(0, len(entries), 100))
    )
    first = _CMAP_SECTION.search(data)
    return data[: first.start()] + blocks + data[data.rindex(b"endcmap") :]


def unify_cjk_text(path: Path) -> int:
    """就地修正 PDF 里各字体的 ToUnicode 表；返回改了几张表。

    改动以增量更新的形式追加在文件末尾（新版本的对象 + xref + trailer），原有内容一字不动；
    比用 pypdf 整本重写快一个数量级（全书 10 万多个对象）。
    """
    from pypdf import PdfReader

    data = path.read_bytes()
    startxref = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data[-1024:])
    if not startxref or not data[int(startxref.group(1)) :].startswith(b"xref"):
        raise PdfError(f"{path} 不是 chromium 写的经典 xref 结构，无法增量修正文字层")
    reader = PdfReader(path)
    fixed: dict[int, bytes] = {}
    seen: set[int] = set()
    for page in reader.pages:
        resources = page.get("/Resources")
        fonts = resources.get_object().get("/Font") if resources else None
        for ref in (fonts.get_object() if fonts else {}).values():
            cmap = ref.get_object().get("/ToUnicode")
            if cmap is None or cmap.indirect_reference is None:
                continue
            idnum = cmap.indirect_reference.idnum
            if idnum in seen:
                continue
            seen.add(idnum)
            new = fix_cmap(cmap.get_object().get_data())
            if new is not None:
                fixed[idnum] = new
    if not fixed:
        return 0
    trailer = reader.trailer
    out = bytearray(b"\n")
    offsets = {}
    for idnum, body in sorted(fixed.items()):
        offsets[idnum] = len(data) + len(out)
        out += b"%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (
            idnum,
            len(body),
            body,
        )
    xref = len(data) + len(out)
    out += b"xref\n0 1\n0000000000 65535 f \n"
    for idnum, offset in offsets.items():
        out += b"%d 1\n%010d 00000 n \n" % (idnum, offset)
    refs = b" ".join(
        b"/%s %d 0 R" % (key.encode(), trailer[f"/{key}"].indirect_reference.idnum)
        for key in ("Root", "Info")
        if f"/{key}" in trailer
    )
    out += b"trailer\n<< /Size %d %s /Prev %s >>\nstartxref\n%d\n%%%%EOF\n" % (
        trailer["/Size"],
        refs,
        startxref.group(1),
        xref,
    )
    with path.open("ab") as fh:
        fh.write(out)
    return len(fixed)


class PdfError(Exception):
    """构建或打印失败；消息是给人看的一段说明。"""


@dataclass(frozen=True)
class PdfResult:
    path: Path
    pages: int
    size: int  # 字节
    seconds: float
    diagrams: int  # 画成 SVG 的 mermaid 图
    formulas: int  # KaTeX 排好的公式


def log(message: str) -> None:
    print(f"[pdf] {message}", file=sys.stderr, flush=True)


def book_info() -> tuple[str, str]:
    """mkdocs.yml 里的书名与版本（页眉用）；文件里有 !!python 标签，只按行取这两项。"""
    title, version = "", ""
    for line in (ROOT / "mkdocs.yml").read_text("utf-8").splitlines():
        if line.startswith("site_name:"):
            title = str(yaml.safe_load(line)["site_name"])
        elif line.strip().startswith("book_version:"):
            version = str(yaml.safe_load(line.strip())["book_version"])
    return title, version


def build_site(site_dir: Path) -> None:
    """``BOOK_PDF=true mkdocs build --strict`` 到 site_dir；失败时抛 PdfError（带构建日志）。"""
    code, log = mkdocs_build(site_dir, BOOK_PDF="true")
    if code != 0:
        raise PdfError(f"mkdocs build --strict 失败：\n{log}")
    if not (site_dir / PRINT_PAGE / "index.html").is_file():
        raise PdfError(f"{site_dir} 里没有 {PRINT_PAGE}index.html：print-site 插件没有启用？")


@contextlib.contextmanager
def _browser(chromium: str, browser=None):
    """用调用方已经开着的 Playwright 浏览器（测试里的会话级夹具），或者自己启动一个。"""
    if browser is not None:
        yield browser
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def print_pdf(site_dir: Path, out: Path, chromium: str, browser=None) -> tuple[int, int]:
    """打开 site_dir 的全书页，等图与公式渲染完后打印到 out；返回 (图数, 公式数)。"""
    from playwright.sync_api import Error as PlaywrightError

    title, version = book_info()
    header = HEADER.format(title=title, version=f"v{version}" if version else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    with serve(site_dir) as url, _browser(chromium, browser) as b:
        context = b.new_context(viewport={"width": 1000, "height": 1400})
        try:
            page = context.new_page()
            page.route(BLOCKED_SCRIPTS, lambda route: route.abort())
            page.route(url + PRINT_PAGE, _fix_print_page)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + PRINT_PAGE, wait_until="load", timeout=RENDER_TIMEOUT_MS)
            page.evaluate(OPEN_DETAILS_JS)
            try:
                page.evaluate(RENDER_JS)
                page.wait_for_function(
                    f"() => !({READY_JS})()", timeout=RENDER_TIMEOUT_MS, polling=250
                )
                diagrams, formulas = page.evaluate(COUNT_JS)
            except PlaywrightError as exc:
                missing = page.evaluate(READY_JS)
                detail = f"；还差：{missing}" if missing else ""
                scripts = f"；页面脚本错误：{errors[:3]}" if errors else ""
                reason = exc.message.splitlines()[0]
                raise PdfError(f"全书页没有渲染完：{reason}{detail}{scripts}") from None
            page.evaluate(OUTLINE_JS)
            log(f"渲染完成：{diagrams} 张图，{formulas} 个公式；打印到 {out}")
            page.pdf(
                path=str(out),
                format="A4",
                print_background=True,
                outline=True,
                tagged=True,
                display_header_footer=True,
                header_template=header,
                footer_template=FOOTER,
                margin=MARGIN,
            )
        finally:
            context.close()
    return diagrams, formulas


def _fix_print_page(route) -> None:
    """取回全书页，修好被 print-site 弄坏的标题标签（见 MANGLED_HEADING）后交给浏览器。"""
    response = route.fetch()
    body = MANGLED_HEADING.sub(r'<h\g<level> id="\g<id>"', response.text())
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-encoding", "content-length")
    }
    route.fulfill(status=response.status, headers=headers, body=body)


def make_pdf(out: Path, *, chromium: str, site_dir: Path | None = None, browser=None) -> PdfResult:
    """构建（或复用 site_dir 里已有的 BOOK_PDF=true 构建）并打印全书 PDF。"""
    from pypdf import PdfReader

    start = time.monotonic()

    def since() -> str:
        return f"{time.monotonic() - start:.1f} s"

    with tempfile.TemporaryDirectory(prefix="book-pdf-") as tmp:
        if site_dir is None:
            site_dir = Path(tmp) / "site"
            log("构建：BOOK_PDF=true mkdocs build --strict")
            build_site(site_dir)
            log(f"构建完成（{since()}）")
        elif not (site_dir / PRINT_PAGE / "index.html").is_file():
            raise PdfError(f"{site_dir} 里没有 {PRINT_PAGE}index.html：先用 BOOK_PDF=true 构建")
        log("渲染：打开全书页，等图、公式、图片与字体就绪")
        diagrams, formulas = print_pdf(site_dir, out, chromium, browser)
    log(f"打印完成（{since()}）；修正文字层里的康熙部首")
    unify_cjk_text(out)
    pages = len(PdfReader(out).pages)
    result = PdfResult(out, pages, out.stat().st_size, time.monotonic() - start, diagrams, formulas)
    log(f"完成：{out}，{pages} 页，{result.size / 1e6:.1f} MB，用时 {since()}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="用 headless chromium 把全书打印成 PDF")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "build" / "book.pdf",
        help="输出路径（默认 build/book.pdf）",
    )
    parser.add_argument("--site-dir", type=Path, help="复用已有的 BOOK_PDF=true 构建，不再构建站点")
    parser.add_argument(
        "--skip-without-browser",
        action="store_true",
        help="没有 chromium 时说明一句并以 0 退出（make build 用：站点照常发布，只是没有 PDF）",
    )
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if not chromium and args.skip_without_browser:
        print("未找到 chromium：跳过全书 PDF（需 chromium 与 fonts-noto-cjk）", file=sys.stderr)
        return 0
    if not chromium:
        fail(parser, 2, "未找到 chromium（Debian 上 apt-get install chromium fonts-noto-cjk）")
    if args.site_dir and not (args.site_dir / PRINT_PAGE / "index.html").is_file():
        fail(parser, 2, f"{args.site_dir} 里没有 {PRINT_PAGE}index.html：先用 BOOK_PDF=true 构建")
    try:
        make_pdf(args.out, chromium=chromium, site_dir=args.site_dir)
    except PdfError as exc:
        fail(parser, 1, str(exc))
    return 0


def fail(parser: argparse.ArgumentParser, code: int, message: str) -> None:
    """一行 ``error:`` 说明（构建失败时后面附构建日志），不出现 Python 调用栈。"""
    parser.exit(code, f"{parser.prog}: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
