"""``python -m tinyllm``：用随书的默认模型续写一段中文，并报告 prefill/decode 速度。"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .generate import stream
from .hf import DEFAULT_DIR, load_pretrained
from .tokenizer import ByteTokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tinyllm",
        description="本书的小模型（Llama 式，约 3M 参数，在本书正文上训练）：续写一段文字。",
    )
    p.add_argument("--prompt", default="推理优化的第一步是", help="提示文本")
    p.add_argument("--max-new-tokens", type=int, default=120, help="最多生成多少个 token（字节）")
    p.add_argument("--temperature", type=float, default=0.0, help="0 为贪心（默认）")
    p.add_argument("--top-k", type=int, help="只在概率最高的 k 个 token 里采样")
    p.add_argument("--seed", type=int, default=0, help="采样的随机种子")
    p.add_argument("--model", type=Path, default=DEFAULT_DIR, help="HF 格式的本地模型目录")
    p.add_argument("--quiet", action="store_true", help="只输出生成的文本")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.max_new_tokens <= 0:
        p.error("--max-new-tokens 必须是正整数")
    if args.temperature < 0:
        p.error("--temperature 不能为负")
    try:
        model = load_pretrained(args.model)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    vocab = model.config.vocab_size
    if args.top_k is not None and not 0 < args.top_k <= vocab:
        p.error(f"--top-k 必须在 1–{vocab} 之间")
    tok = ByteTokenizer()
    torch.manual_seed(args.seed)
    prompt = tok.encode(args.prompt)
    room = model.config.max_position_embeddings - len(prompt)
    if room < 1:
        p.error(f"提示太长：{len(prompt)} 个 token，上限 {model.config.max_position_embeddings}")
    t0 = time.perf_counter()
    first_at, out = None, []
    kw = dict(
        temperature=args.temperature, top_k=args.top_k, seed=args.seed, stop_id=tok.eos_token_id
    )
    for token in stream(model, prompt, min(args.max_new_tokens, room), **kw):
        first_at = first_at or time.perf_counter()
        out.append(token)
    done = time.perf_counter()
    print(args.prompt + tok.decode(out).rstrip("\ufffd"))  # 末尾被截断的半个汉字不显示
    if not args.quiet:
        n = model.config.num_parameters()
        tpot = (done - first_at) / max(1, len(out) - 1) * 1e3
        print(
            f"\n[{n / 1e6:.1f}M 参数；提示 {len(prompt)} token，生成 {len(out)} token；"
            f"TTFT {(first_at - t0) * 1e3:.1f} ms，TPOT {tpot:.2f} ms]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
