"""vLLM 快速入门：离线批量推理（``LLM``）与在线服务（``vllm serve`` + OpenAI 客户端）。

API 与默认值按 vLLM 0.33.0 源码核对：``LLM(model, *, dtype, gpu_memory_utilization=0.92, ...)``、
``SamplingParams(temperature=1.0, max_tokens=16, ...)``、``RequestOutput.outputs[0].text``。
没有 GPU 或没装 vLLM 时只打印一行原因并返回非零退出码，不抛调用栈。
"""

from __future__ import annotations

import importlib.util


class Unavailable(RuntimeError):
    """缺硬件或缺包：CLI 打印一行信息后以退出码 1 结束。"""


def require_gpu_and_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise Unavailable("没有安装 vLLM：在有 NVIDIA GPU 的机器上 pip install vllm==0.33.0 后再试")
    import torch

    if not torch.cuda.is_available():
        raise Unavailable(
            "没有可用的 NVIDIA GPU（torch.cuda.is_available() 为 False），vLLM 无法启动"
        )


# --8<-- [start:offline]
def offline(model: str, prompts: list[str], max_tokens: int = 64, max_model_len: int = 4096):
    """离线批量推理：vLLM 自己做连续批处理，一次交给它所有提示即可。"""
    require_gpu_and_vllm()
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=model,
        max_model_len=max_model_len,  # 只为这么长的上下文预留 KV Cache
        gpu_memory_utilization=0.90,  # 权重 + KV Cache 最多占显存的 90%
        seed=0,
    )
    # 显式给出 SamplingParams：不给时 vLLM 会沿用模型 generation_config.json 里的采样参数
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    for out in llm.generate(prompts, params):
        yield out.prompt, out.outputs[0].text
    # --8<-- [end:offline]


# --8<-- [start:client]
def chat(base_url: str, model: str, prompt: str, api_key: str = "EMPTY", max_tokens: int = 128):
    """用官方 openai 客户端流式调用 vllm serve 的 /v1/chat/completions。"""
    try:
        from openai import APIConnectionError, APIStatusError, OpenAI
    except ImportError:
        raise Unavailable("没有安装 openai 客户端：pip install openai") from None
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    try:
        stream = client.chat.completions.create(
            model=model,  # 须与服务端的模型名（或 --served-model-name）一致
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
    except APIConnectionError:
        raise Unavailable(f"连不上 {base_url}：先用 vllm serve 启动服务（见 4.3 节）") from None
    except APIStatusError as e:  # 401：API key 不对；404：模型名与 --served-model-name 不符
        raise Unavailable(f"服务端返回 HTTP {e.status_code}：{e.message}") from None
    # --8<-- [end:client]
