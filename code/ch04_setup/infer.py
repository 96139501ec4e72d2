"""用 Hugging Face transformers 做推理：单条、批量、流式，以及 TTFT / TPOT / 吞吐基准。

默认加载随书的小模型目录（``tinyllm/checkpoint``，HF Llama 格式，CPU 上秒级）；
``--model <hf-id 或本地目录>`` 换成真实模型。transformers 版本：5.23.0。
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from threading import Thread

import torch
from tinyllm import DEFAULT_DIR
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as hf_logging


# --8<-- [start:load]
def load(model_id: str = str(DEFAULT_DIR), device: str = "cpu"):
    """返回 (model, tokenizer)。批量推理要左填充：新 token 接在每行的最右边。"""
    hf_logging.disable_progress_bar()  # 不显示“Loading weights”进度条
    tok = AutoTokenizer.from_pretrained(model_id)
    tok.padding_side = "left"
    if tok.pad_token is None:  # 很多模型没有 pad token，借用 eos
        tok.pad_token = tok.eos_token
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype).to(device).eval()
    return model, tok


def encode(tok, prompts: list[str]) -> dict:
    """有对话模板的（Instruct 模型）套模板；随书小模型没有模板，直接编码。"""
    if tok.chat_template:
        prompts = [
            tok.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
    return tok(prompts, return_tensors="pt", padding=True)
    # --8<-- [end:load]


# --8<-- [start:single]
@torch.inference_mode()
def generate_batch(model, tok, prompts: list[str], max_new_tokens: int = 64) -> list[str]:
    """一次前向处理整批提示；贪心解码，结果可复现。"""
    inputs = encode(tok, prompts).to(model.device)
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
    )
    new_tokens = out[:, inputs["input_ids"].shape[1] :]  # 去掉提示部分
    return tok.batch_decode(new_tokens, skip_special_tokens=True)


def generate_one(model, tok, prompt: str, max_new_tokens: int = 64) -> str:
    return generate_batch(model, tok, [prompt], max_new_tokens)[0]
    # --8<-- [end:single]


# --8<-- [start:stream]
def stream(model, tok, prompt: str, max_new_tokens: int = 64) -> Iterator[str]:
    """generate 在后台线程里跑，TextIteratorStreamer 把解码出的文本片段交给前台。"""
    inputs = encode(tok, [prompt]).to(model.device)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=60)
    kwargs = dict(
        **inputs,
        streamer=streamer,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    worker = Thread(target=model.generate, kwargs=kwargs)
    worker.start()
    yield from streamer  # 每次拿到一段可打印的文本（汉字凑齐 3 个字节才会出来）
    worker.join()
    # --8<-- [end:stream]


# --8<-- [start:bench]
class TokenTimer(BaseStreamer):
    """generate 每产出一步就调用一次 put()：第一次是提示本身，之后每次一个新 token。"""

    def __init__(self):
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._seen_prompt = False

    def put(self, value):
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass


@dataclass(frozen=True)
class BenchResult:
    ttft_ms: float  # 首 token 延迟：提交到第一个新 token
    tpot_ms: float  # 之后每个 token 的平均间隔
    tokens_per_s: float  # 单条请求的生成速度
    new_tokens: int


@torch.inference_mode()
def bench_one(model, tok, prompt: str, max_new_tokens: int) -> BenchResult:
    inputs = encode(tok, [prompt]).to(model.device)
    timer = TokenTimer()
    model.generate(
        **inputs,
        streamer=timer,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        min_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id,
    )
    t = timer.times
    ttft = t[0] - timer.start
    tpot = (t[-1] - t[0]) / max(1, len(t) - 1)
    return BenchResult(ttft * 1e3, tpot * 1e3, len(t) / (t[-1] - timer.start), len(t))


def bench(model, tok, prompt: str, max_new_tokens: int, runs: int) -> BenchResult:
    """跑 runs 次取中位数（第一次之前先预热一次，不计入）。"""
    bench_one(model, tok, prompt, 4)
    results = [bench_one(model, tok, prompt, max_new_tokens) for _ in range(runs)]
    return BenchResult(
        statistics.median(r.ttft_ms for r in results),
        statistics.median(r.tpot_ms for r in results),
        statistics.median(r.tokens_per_s for r in results),
        max_new_tokens,
    )


@torch.inference_mode()
def batch_throughput(model, tok, prompt: str, batch: int, max_new_tokens: int) -> float:
    """同一提示复制 batch 份一起生成：整批每秒产出的 token 数。"""
    inputs = encode(tok, [prompt] * batch).to(model.device)
    t0 = time.perf_counter()
    model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    return batch * max_new_tokens / (time.perf_counter() - t0)
    # --8<-- [end:bench]
