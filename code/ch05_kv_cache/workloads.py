"""本章的三组测量：分页与连续预留的显存浪费、共享系统提示的前缀缓存、Agent 循环的缓存命中。

所有工作负载都由固定种子生成，重复运行得到相同的 token 数；耗时是本机实测，每次略有不同。
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
from tinyllm.model import TinyLLM

from .paged import BlockManager, Chunk, PagedKVCache, forward_paged
from .prefix import PrefixCachingBlockManager


# --8<-- [start:waste]
@dataclass(frozen=True)
class Request:
    prompt_len: int
    output_len: int  # 实际生成的长度（事先不知道）


def mixed_requests(
    n: int, seed: int = 0, max_prompt: int = 1536, max_tokens: int = 512
) -> list[Request]:
    """长短混杂的请求。

    提示长度对数正态（中位数约 200），输出长度指数分布（均值 150，封顶 max_tokens）。
    """
    rng = random.Random(seed)
    return [
        Request(
            prompt_len=min(max_prompt, max(8, int(rng.lognormvariate(5.3, 0.9)))),
            output_len=min(max_tokens, max(1, int(rng.expovariate(1 / 150)))),
        )
        for _ in range(n)
    ]


def reserved_tokens(
    r: Request, strategy: str, max_model_len: int, max_tokens: int, block_size: int
) -> int:
    """一个请求在各种策略下占着的 KV 槽数。"""
    if strategy == "max_model_len":  # 连续预留：按模型最大长度一次留够
        return max_model_len
    if strategy == "max_tokens":  # 连续预留：按 prompt + max_tokens 留（输出长度事先未知）
        return r.prompt_len + max_tokens
    if strategy == "paged":  # 分页：用多少块拿多少块，只浪费最后一块的空位
        return -(-(r.prompt_len + r.output_len) // block_size) * block_size
    raise ValueError(f"未知策略 {strategy!r}")


def waste_table(
    reqs: list[Request], max_model_len: int, max_tokens: int, block_size: int, budget: int
):
    """每种策略：预留总量、有效利用率、KV 预算里能同时容纳几个请求。"""
    used = sum(r.prompt_len + r.output_len for r in reqs)
    rows = []
    for strategy in ("max_model_len", "max_tokens", "paged"):
        sizes = [reserved_tokens(r, strategy, max_model_len, max_tokens, block_size) for r in reqs]
        fit, total = 0, 0
        for size in sizes:  # 按到达顺序放，放不下就停
            if total + size > budget:
                break
            fit, total = fit + 1, total + size
        rows.append((strategy, sum(sizes), used / sum(sizes), fit))
    return used, rows
    # --8<-- [end:waste]


SYSTEM_TEXT = (
    "你是《LLM推理优化实战》的答疑助手。回答要准确、具体，先给结论再给理由；"
    "涉及 vLLM、SGLang 的参数时注明版本；涉及数字时注明出处或测量命令。"
)


def shared_prefix_prompts(
    system_len: int, user_len: int, num_requests: int, bos: int
) -> list[list[int]]:
    """同一段系统提示（system_len 个 token，含 <bos>）+ 各不相同的用户问题（user_len 个 token）。"""
    system = ([bos] + list(SYSTEM_TEXT.encode()) * 10)[:system_len]
    prompts = []
    for i in range(num_requests):
        question = f"问题 {i}：第 {i % 7 + 3} 章的示例怎么运行？".encode() * 8
        prompts.append(system + list(question[:user_len]))
    return prompts


# --8<-- [start:prefix-bench]
@torch.inference_mode()
def prefill_all(model: TinyLLM, prompts: list[list[int]], block_size: int, caching: bool):
    """依次 prefill 每个提示（前一个结束后下一个才来）。

    返回每个请求的 (实际计算的 token 数, 秒, 预测的下一个 token)。
    """
    blocks = sum(-(-len(p) // block_size) for p in prompts)
    manager = (PrefixCachingBlockManager if caching else BlockManager)(blocks, block_size)
    cache, results = PagedKVCache(model, blocks, block_size), []
    for seq_id, prompt in enumerate(prompts):
        if caching:
            cached = manager.allocate_prompt(seq_id, prompt)
        else:
            cached = 0
            manager.allocate_slots(seq_id, len(prompt))
        t0 = time.perf_counter()
        logits = forward_paged(model, cache, manager, [Chunk(seq_id, prompt[cached:], cached)])
        seconds = time.perf_counter() - t0
        if caching:
            manager.cache_full_blocks(seq_id, prompt)
        results.append((len(prompt) - cached, seconds, int(logits[-1].argmax())))
        manager.free(seq_id)
    return results
    # --8<-- [end:prefix-bench]


# --8<-- [start:agent]
def agent_transcript(turns: int, strategy: str, seed: int = 0) -> list[list[int]]:
    """模拟一个编码 Agent 每轮发给模型的完整提示（token id 序列）。

    固定部分：系统提示 600、工具定义 900、环境信息 30 个 token；每轮追加用户消息 40、
    模型的工具调用 30、工具结果 250 个 token；每 3 轮工作目录变一次。
    strategy：append（把新环境追加成一条新消息）、modify（原地改开头的环境信息）、
    shuffle_tools（每轮工具定义顺序不同，例如 MCP 列表没排序）。
    """
    if strategy not in ("append", "modify", "shuffle_tools"):
        raise ValueError(f"未知策略 {strategy!r}")
    rng = random.Random(seed)

    def chunk(n: int) -> list[int]:
        return [rng.randrange(256) for _ in range(n)]

    system, tools = chunk(600), [chunk(150) for _ in range(6)]
    env, history, prompts = chunk(30), [], []
    for turn in range(turns):
        if turn and turn % 3 == 0:  # 工作目录变了
            new_env = chunk(30)
            if strategy == "append":
                history += new_env
            else:
                env = new_env
        order = rng.sample(tools, len(tools)) if strategy == "shuffle_tools" else tools
        history += chunk(40)  # 用户消息
        prompts.append(system + [t for tool in order for t in tool] + env + history)
        history += chunk(30) + chunk(250)  # 模型的工具调用 + 工具结果
    return prompts


def agent_prefill_tokens(prompts: list[list[int]], block_size: int = 16) -> list[tuple[int, int]]:
    """每轮 (提示长度, 开了前缀缓存后真正要 prefill 的 token 数)。缓存池足够大，不淘汰。"""
    manager = PrefixCachingBlockManager(sum(-(-len(p) // block_size) for p in prompts), block_size)
    rows = []
    for seq_id, prompt in enumerate(prompts):
        cached = manager.allocate_prompt(seq_id, prompt)
        manager.cache_full_blocks(seq_id, prompt)
        manager.free(seq_id)
        rows.append((len(prompt), len(prompt) - cached))
    return rows
    # --8<-- [end:agent]
