"""vLLM 通用插件示例：把本书小模型的结构名注册到 vLLM 的模型注册表。

做法对照 vLLM 0.33.0：入口点组 ``vllm.general_plugins``（``vllm/plugins/__init__.py``），
``ModelRegistry.register_model(name, "module:Class")`` 的字符串形式延迟导入，避免在主进程里
过早初始化 CUDA（``vllm/model_executor/models/registry.py`` 的注释）。
版本检查是插件自己写的：vLLM 没有提供这样的装饰器，超出测过的版本范围就不注册、只告警。
模块顶层不导入 vLLM：``importlib.metadata`` 发现和加载入口点时不需要 vLLM。
"""

from __future__ import annotations

import logging

log = logging.getLogger("book_vllm_plugin")

ARCH = "BookTinyLLMForCausalLM"  # 模型目录 config.json 里 "architectures" 写这个名字
IMPL = "vllm.model_executor.models.llama:LlamaForCausalLM"  # 结构与 Llama 相同，复用其实现
TESTED = ((0, 33), (0, 34))  # 测过的 vLLM 版本：[0.33, 0.34)


def supported(version: str) -> bool:
    major, minor = (int(x) for x in version.split(".")[:2])
    return TESTED[0] <= (major, minor) < TESTED[1]


def register() -> None:
    """vLLM 在每个进程里各调用一次；重复注册同一个名字只会覆盖，所以可重入。"""
    import vllm
    from vllm import ModelRegistry

    if not supported(vllm.__version__):
        log.warning("book_vllm_plugin 只在 vLLM 0.33.x 上测过，当前 %s，跳过注册", vllm.__version__)
        return
    if ARCH not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCH, IMPL)
