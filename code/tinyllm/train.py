"""在本书自己的正文（docs/ 下的 Markdown）上训练默认模型。

``make model`` 调用它。固定随机种子与线程数，同一份语料、同一版本 PyTorch 重跑得到同样的权重；
``training.json`` 记下语料的 SHA-256、步数和损失，方便核对。
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import PRESETS, ModelConfig
from .hf import save_pretrained
from .model import TinyLLM

FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
NOISE = re.compile(r"^.*(--8<--|https?://).*\n", re.M)  # 代码嵌入指令与长网址对小模型只是噪声


def load_corpus(docs: Path, only: list[str] | None = None) -> tuple[bytes, list[str]]:
    """按文件名排序拼接所有页面，去掉 front matter、嵌入指令和含网址的行。

    ``only`` 给出相对 ``docs`` 的文件列表时只用这些页面（例如与某个检查点同一份语料）。
    """
    files = sorted(p for p in docs.rglob("*.md") if "assets" not in p.parts)
    if only is not None:
        files = [p for p in files if str(p.relative_to(docs)) in set(only)]
    if not files:
        raise FileNotFoundError(f"{docs} 下没有 Markdown 页面")
    parts = [NOISE.sub("", FRONT_MATTER.sub("", p.read_text("utf-8"))) for p in files]
    return "\n\n".join(parts).encode("utf-8"), [str(p.relative_to(docs)) for p in files]


def checkpoint_corpus(docs: Path, checkpoint: Path) -> list[int]:
    """某个检查点训练用过的页面（training.json 的 ``corpus_files``），按当前内容读出的 token。"""
    files = json.loads((Path(checkpoint) / "training.json").read_text("utf-8"))["corpus_files"]
    data, _ = load_corpus(docs, files)
    return list(data)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 800
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.seq_len, self.threads) <= 0 or self.lr <= 0:
            raise ValueError("steps、batch_size、seq_len、threads、lr 都必须为正")


def lr_at(step: int, tc: TrainConfig) -> float:
    """线性预热后余弦退火到峰值的 10%。"""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    return tc.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


# --8<-- [start:train-loop]
def train(data: bytes, cfg: ModelConfig, tc: TrainConfig, log=sys.stderr) -> tuple[TinyLLM, dict]:
    torch.manual_seed(tc.seed)
    torch.set_num_threads(tc.threads)
    tokens = torch.tensor(list(data), dtype=torch.long)
    split = int(len(tokens) * 0.95)
    train_tok, val_tok = tokens[:split], tokens[split:]
    if len(val_tok) <= tc.seq_len + 1:
        raise ValueError(f"语料只有 {len(tokens)} 字节，不够切出 seq_len={tc.seq_len} 的验证窗口")
    model = TinyLLM(cfg)
    for p in model.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    opt = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=(0.9, 0.95), weight_decay=tc.weight_decay
    )
    gen = torch.Generator().manual_seed(tc.seed)

    def batch(src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(src) - tc.seq_len - 1, (tc.batch_size,), generator=gen)
        x = torch.stack([src[s : s + tc.seq_len] for s in starts])  # (B, T)
        y = torch.stack([src[s + 1 : s + tc.seq_len + 1] for s in starts])
        return x, y

    t0, loss = time.perf_counter(), torch.tensor(0.0)
    model.train()
    for step in range(tc.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        x, y = batch(train_tok)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == tc.steps - 1:
            rate = (step + 1) / (time.perf_counter() - t0)
            print(
                f"step {step + 1}/{tc.steps}  loss {loss.item():.3f}  {rate:.1f} step/s", file=log
            )
    model.eval()
    with torch.no_grad():
        vx, vy = batch(val_tok)
        val = F.cross_entropy(model(vx).flatten(0, 1), vy.flatten()).item()
    report = {
        "train_config": asdict(tc),
        "final_train_loss": round(loss.item(), 4),
        "val_loss": round(val, 4),
        "corpus_bytes": len(tokens),
        "corpus_sha256": hashlib.sha256(data).hexdigest(),
        "seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    return model, report
    # --8<-- [end:train-loop]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tinyllm.train", description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=Path, default=Path("docs"), help="语料目录（默认 docs/）")
    p.add_argument("--out", type=Path, required=True, help="输出的模型目录")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument(
        "--corpus-of",
        type=Path,
        metavar="CHECKPOINT",
        help="只用该检查点 training.json 里列出的页面（第 8 章的草稿模型要与目标模型同语料）",
    )
    args = p.parse_args(argv)
    try:
        tc = TrainConfig(steps=args.steps)
        only = None
        if args.corpus_of:
            only = json.loads((args.corpus_of / "training.json").read_text("utf-8"))["corpus_files"]
        data, files = load_corpus(args.docs, only)
    except (ValueError, OSError, KeyError) as e:
        p.error(str(e))
    model, report = train(data, PRESETS[args.preset], tc)
    save_pretrained(model, args.out)
    report |= {"preset": args.preset, "corpus_files": files}
    (args.out / "training.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"已保存到 {args.out}：val_loss={report['val_loss']}，用时 {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
