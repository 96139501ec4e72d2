"""vLLM 插件怎样被发现和加载（9.2 节）：用标准库 ``importlib.metadata`` 复现 vLLM 0.33.0 的逻辑。

vLLM 0.33.0 读六个入口点组（``vllm/plugins/__init__.py``，``vllm/v1/sample/logits_processor/``）。
``VLLM_PLUGINS`` 不设时加载组里全部插件；设了就按逗号切开，只加载名字在列表里的（不去空格）。
``plugin.load()`` 失败只记日志、跳过；插件函数自己抛的异常不拦，会让 vLLM 起不来。
通用插件在 API 服务进程、引擎核心进程、每个 worker 里各加载一次，所以注册函数必须可重入。
这里的 :func:`load_general_plugins` 与之同构，不需要装 vLLM，便于测试和读懂。
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from importlib.metadata import EntryPoint, distributions, entry_points

log = logging.getLogger("ch09_serving.plugins")

# --8<-- [start:groups]
GROUPS = {
    "vllm.general_plugins": "通用插件：注册模型结构、打补丁；每个进程调用一次注册函数",
    "vllm.platform_plugins": "硬件平台插件：返回平台类的全限定名，用于新加速器",
    "vllm.io_processor_plugins": "池化模型的输入输出处理（只在主进程）",
    "vllm.stat_logger_plugins": "自定义指标记录器：StatLoggerBase 的子类（只在主进程）",
    "vllm.endpoint_plugins": "给 API 服务加路由；必须在 VLLM_PLUGINS 里点名才加载",
    "vllm.logits_processors": "自定义 logits 处理器；不受 VLLM_PLUGINS 过滤",
}
# --8<-- [end:groups]


def discover(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    """找出某个组的全部入口点；``path`` 给定时只在这些目录里找（测试用），否则查 sys.path。"""
    if path is None:
        return list(entry_points(group=group))
    return [ep for d in distributions(path=path) for ep in d.entry_points if ep.group == group]


# --8<-- [start:load]
def load_plugins_by_group(
    group: str, env: dict[str, str] | None = None, path: list[str] | None = None
) -> dict[str, Callable]:
    env = os.environ if env is None else env
    allowed = env["VLLM_PLUGINS"].split(",") if "VLLM_PLUGINS" in env else None
    plugins = {}
    for ep in discover(group, path):
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            plugins[ep.name] = ep.load()  # 导入模块、取出对象；这一步失败只跳过
        except Exception:
            log.exception("插件 %s 加载失败", ep.name)
    return plugins


def load_general_plugins(env=None, path=None) -> list[str]:
    """加载并调用全部通用插件，返回调用过的插件名。注册函数抛异常时照样抛出去。"""
    plugins = load_plugins_by_group("vllm.general_plugins", env, path)
    for register in plugins.values():
        register()
    return list(plugins)
    # --8<-- [end:load]


def cmd_plugins(args) -> None:
    path = [args.path] if args.path else None
    env = dict(os.environ)
    print(f"VLLM_PLUGINS = {env.get('VLLM_PLUGINS', '（未设置：加载全部）')}")
    for group, what in GROUPS.items():
        eps = discover(group, path)
        print(f"{group}（{what}）：{len(eps)} 个")
        for ep in eps:
            print(f"  {ep.name} = {ep.value}")


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("plugins", help="列出已安装的 vLLM 插件入口点（不需要 vLLM）")
    p.add_argument("--path", help="只在这个目录里找（如 pip install --target 装到的目录）")
    p.set_defaults(fn=cmd_plugins)
