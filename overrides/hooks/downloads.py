"""构建钩子：为每章生成一个可下载的代码压缩包 ``downloads/<包名>.zip``。

章节目录 ``index.md`` 的 front matter 里写了 ``code_package: chNN_xxx`` 的章，就有一个压缩包，
内含：

- 本章的包，以及它（直接或间接）导入的本书其他包，例如 ``tinyllm``；
- ``requirements.txt``：只列本章真正导入的第三方库，版本取自 ``pyproject.toml`` 的 ``code`` 依赖；
- ``README.md``：怎样安装、怎样运行。

压缩包在 ``on_files`` 里作为“生成的文件”加入站点，所以页面与模板里指向它的链接能被 mkdocs 校验；
文件时间戳固定，同样的代码总是得到同样字节的压缩包。
"""

from __future__ import annotations

import ast
import io
import re
import tomllib
import zipfile
from functools import cache
from pathlib import Path

from mkdocs.structure.files import File
from mkdocs.utils.meta import get_data

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "code"
# 导入名与 PyPI 发行名不同的第三方库。
DIST_NAMES = {"yaml": "PyYAML", "pynvml": "nvidia-ml-py", "prometheus_client": "prometheus-client"}
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def local_packages() -> set[str]:
    return {p.name for p in CODE.iterdir() if (p / "__init__.py").is_file()}


def imported_modules(package: str) -> set[str]:
    """包里所有 .py 文件顶层导入的模块名（``import a.b`` 记作 ``a``；相对导入不计）。"""
    names: set[str] = set()
    for path in sorted((CODE / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def package_closure(package: str) -> list[str]:
    """本章的包加上它传递依赖的本书其他包，本章在前。"""
    local = local_packages()
    order, todo = [], [package]
    while todo:
        name = todo.pop(0)
        if name in order:
            continue
        order.append(name)
        todo.extend(sorted(imported_modules(name) & local - set(order)))
    return order


@cache
def pinned_code_requirements() -> dict[str, str]:
    """``pyproject.toml`` 里 ``code`` 依赖的钉死版本：小写发行名 -> ``名==版本``。"""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    pins = project["optional-dependencies"]["code"]
    return {re.split(r"[=<>!~\[]", pin, maxsplit=1)[0].lower(): pin for pin in pins}


def requirements(packages: list[str]) -> list[str]:
    pins = pinned_code_requirements()
    needed = set()
    for package in packages:
        for module in imported_modules(package):
            dist = DIST_NAMES.get(module, module).lower()
            if dist in pins:
                needed.add(pins[dist])
    return sorted(needed, key=str.lower)


def readme(package: str, chapter_title: str, packages: list[str], reqs: list[str]) -> str:
    extra = "、".join(f"`{p}/`" for p in packages[1:])
    bundled = f"，以及它用到的本书其他包 {extra}" if extra else ""
    torch_note = (
        "\n只有 CPU 的机器可以先装 CPU 版 PyTorch，省下几 GB 的 CUDA 依赖：\n\n"
        "```bash\npip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu\n```\n"
        if any(r.startswith("torch==") for r in reqs)
        else ""
    )
    return f"""# {package}：《LLM推理优化实战》{chapter_title}的示例代码

本压缩包含本章的包 `{package}/`{bundled}。所有示例都能在 2 核 CPU、无 GPU、无网络的机器上运行；
需要 GPU 或 vLLM/SGLang 的路径在缺少它们时会用一行说明退出。

## 安装（Python 3.11+）

```bash
python3 -m venv .venv
. .venv/bin/activate
pip install -r requirements.txt
```
{torch_note}
## 运行

在解压后的目录里执行：

```bash
python -m {package} --help   # 每个子命令与参数的说明
python -m {package}          # 本章的默认演示
```

书中每段命令与输出都来自这些代码；完整的仓库（含测试与全书源文件）见书的首页。
"""


def build_zip(package: str, chapter_title: str) -> bytes:
    packages = package_closure(package)
    reqs = requirements(packages)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(f"{package}/{name}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        add("README.md", readme(package, chapter_title, packages, reqs).encode("utf-8"))
        add("requirements.txt", ("\n".join(reqs) + "\n").encode("utf-8"))
        for name in packages:
            for path in sorted((CODE / name).rglob("*")):
                if path.is_file() and not SKIP_PARTS & set(path.parts) and path.suffix != ".pyc":
                    add(path.relative_to(CODE).as_posix(), path.read_bytes())
    return buffer.getvalue()


def chapter_packages(docs_dir: Path) -> dict[str, str]:
    """包名 -> 章标题（取自章节 index.md 的 H1，例如“第 5 章 KV Cache 优化”）。"""
    out = {}
    for index in sorted(docs_dir.glob("ch*/index.md")):
        body, meta = get_data(index.read_text("utf-8"))
        package = meta.get("code_package")
        if package:
            title = next(line[2:].strip() for line in body.splitlines() if line.startswith("# "))
            out[package] = title
    return out


def on_files(files, config):
    for package, title in chapter_packages(Path(config["docs_dir"])).items():
        files.append(
            File.generated(config, f"downloads/{package}.zip", content=build_zip(package, title))
        )
    return files
