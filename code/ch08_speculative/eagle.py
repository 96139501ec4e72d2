"""EAGLE 式草稿头：不另起一个小模型，而是在目标模型最后一层的特征上接一层解码器。

EAGLE（Li et al., arXiv 2401.15077）的观察：预测“下一个特征”比预测“下一个 token”容易，
而且把已经采样出的 token 一起喂进去可以消除采样带来的不确定性。草稿头的输入是
concat(f_t, embed(x_{t+1}))，经一个全连接降维、一层解码器，输出 f̂_{t+1}，再用目标模型
自己的 RMSNorm + lm_head 得到 x_{t+2} 的分布。EAGLE-2（arXiv 2406.16858）加了动态草稿树，
EAGLE-3（arXiv 2503.01840）改为融合低、中、高多层特征并去掉特征回归损失；这里只实现最初的单链版本。
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tinyllm.model import DecoderLayer, KVCache, TinyLLM, rope_cos_sin
from torch import Tensor, nn

from .lm import CachedLM, sample

DEFAULT_EAGLE = Path(__file__).with_name("checkpoints") / "eagle"


# --8<-- [start:head]
class EagleHead(nn.Module):
    """fc(concat(特征, 下一个 token 的嵌入)) → 一层解码器 → 预测的下一个特征。"""

    def __init__(self, target: TinyLLM):
        super().__init__()
        cfg = target.config
        self.fc = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.layer = DecoderLayer(cfg)
        cos, sin = rope_cos_sin(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.cache_len = 0

    def forward(self, features: Tensor, next_embeds: Tensor, input_pos: Tensor) -> Tensor:
        """features/next_embeds: (B, T, hidden)，input_pos: (T,) → (B, T, hidden)。"""
        x = self.fc(torch.cat([features, next_embeds], dim=-1))
        key_pos = torch.arange(self.cache_len) if self.cache_len else input_pos
        mask = key_pos[None, :] <= input_pos[:, None]  # (T, S) 因果掩码
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]
        return self.layer(x, cos, sin, mask, input_pos)

    # --8<-- [end:head]

    def setup_cache(self, max_seq: int) -> None:
        cfg = self.layer.self_attn
        self.layer.self_attn.kv_cache = KVCache(1, cfg.n_kv, max_seq, cfg.d, torch.float32)
        self.cache_len = max_seq

    def clear_cache(self) -> None:
        self.layer.self_attn.kv_cache = None
        self.cache_len = 0


def head_logits(target: TinyLLM, features: Tensor) -> Tensor:
    """用目标模型自己的 RMSNorm + lm_head 把（预测的）特征变成 logits。"""
    return target.lm_head(target.model.norm(features))


# --8<-- [start:proposer]
class EagleProposer:
    """用目标模型已验证位置的真实特征填草稿头的缓存，再用预测特征自回归地猜 k 个 token。"""

    def __init__(self, head: EagleHead, target: CachedLM):
        self.head, self.target = head.eval(), target
        head.setup_cache(target.max_len)
        self.valid = 0  # 草稿头缓存里，位置 < valid 的项来自真实特征
        self.forwards, self.seconds = 0, 0.0

    @torch.inference_mode()
    def propose(self, seq, k, temperature, gen):
        L = len(seq)
        if L < 2 or k == 0:
            return [], None
        if self.target.cached[: L - 1] != seq[: L - 1]:
            self.target.logits(seq[: L - 1], 1)  # 首轮：先让目标模型预填充，拿到特征
        t0 = time.perf_counter()
        start = min(self.valid, L - 2)  # 至少重算最后一个位置，才拿得到 f̂_{L-1}
        t = torch.arange(start, L - 1)  # 用真实特征 f_t 与 x_{t+1} 补齐草稿头缓存
        embed = self.target.model.model.embed_tokens
        f = self.head(self.target.features[t][None], embed(torch.tensor([seq[start + 1 : L]])), t)
        self.valid, self.forwards = L - 1, self.forwards + 1
        draft, qs, feat = [], [], f[:, -1:]  # feat = f̂_{L-1}
        for j in range(k):
            q = _probs(head_logits(self.target.model, feat)[0, 0], temperature)
            x = int(q.argmax()) if temperature == 0 else sample(q, gen)
            draft.append(x)
            qs.append(q)
            if j + 1 < k:  # 把预测特征和刚猜的 token 再喂回去
                pos = torch.tensor([L - 1 + j])  # 输入 (f̂_t, x_{t+1}) 放在位置 t，与训练时一致
                feat = self.head(feat, embed(torch.tensor([[x]])), pos)
                self.forwards += 1
        self.seconds += time.perf_counter() - t0
        return draft, None if temperature == 0 else torch.stack(qs)

    # --8<-- [end:proposer]


def _probs(logits: Tensor, temperature: float) -> Tensor:
    from .lm import probs_from_logits

    return probs_from_logits(logits.float(), temperature)


@dataclass(frozen=True)
class EagleTrainConfig:
    steps: int = 500
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 2e-3
    cls_weight: float = 0.1  # EAGLE 论文：L = L_reg + 0.1 · L_cls
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.seq_len) <= 0 or self.lr <= 0:
            raise ValueError("steps、batch_size、seq_len、lr 都必须为正")


def target_features(target: TinyLLM, x: Tensor) -> tuple[Tensor, Tensor]:
    """目标模型前向，返回 (最后一层特征 (B, T, h), logits (B, T, vocab))。"""
    seen = []
    hook = target.model.norm.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    try:
        logits = target(x)
    finally:
        hook.remove()
    return seen[0], logits


# --8<-- [start:train]
def train_eagle(
    target: TinyLLM, data: list[int], tc: EagleTrainConfig, log=sys.stderr
) -> tuple[EagleHead, dict]:
    """冻结目标模型，只训草稿头：特征回归（Smooth L1）+ 对目标分布的交叉熵。"""
    torch.manual_seed(tc.seed)
    target.eval().requires_grad_(False)
    head = EagleHead(target).train()
    opt = torch.optim.AdamW(head.parameters(), lr=tc.lr)
    tokens, gen = torch.tensor(data), torch.Generator().manual_seed(tc.seed)
    embed, t0 = target.model.embed_tokens, time.perf_counter()
    for step in range(tc.steps):
        starts = torch.randint(0, len(tokens) - tc.seq_len - 1, (tc.batch_size,), generator=gen)
        x = torch.stack([tokens[s : s + tc.seq_len] for s in starts])  # (B, T)
        with torch.no_grad():
            feats, logits = target_features(target, x)
        # 位置 t：输入 f_t 与 x_{t+1}，目标是 f_{t+1} 以及目标模型在 t+1 处的分布
        pred = head(feats[:, :-1], embed(x[:, 1:]), torch.arange(tc.seq_len - 1))
        reg = F.smooth_l1_loss(pred, feats[:, 1:])
        target_p = logits[:, 1:].softmax(-1)
        cls = -(target_p * head_logits(target, pred).log_softmax(-1)).sum(-1).mean()
        loss = reg + tc.cls_weight * cls
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == tc.steps - 1:
            rate = (step + 1) / (time.perf_counter() - t0)
            print(
                f"step {step + 1}/{tc.steps}  reg {reg.item():.4f}  cls {cls.item():.3f}  "
                f"{rate:.1f} step/s",
                file=log,
            )
    report = {
        "train_config": asdict(tc),
        "final_reg": round(reg.item(), 4),
        "final_cls": round(cls.item(), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    return head.eval(), report
    # --8<-- [end:train]


def save_head(head: EagleHead, out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, out / "head.safetensors")
    (out / "training.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")


def load_head(target: TinyLLM, path: Path = DEFAULT_EAGLE) -> EagleHead:
    file = Path(path) / "head.safetensors"
    if not file.is_file():
        raise FileNotFoundError(f"{path} 下没有 head.safetensors")
    head = EagleHead(target)
    head.load_state_dict(load_file(file))
    return head.eval()
