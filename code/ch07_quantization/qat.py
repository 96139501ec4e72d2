"""量化感知训练（QAT）：前向用伪量化权重，反向用直通估计器（STE）把梯度原样传给浮点主权重。

round() 的导数几乎处处为 0，直接反传会让梯度消失；STE（Bengio et al., arXiv 1308.3432）
在反向时把“量化再反量化”当成恒等函数。LMSYS 2026-01-26 的 INT4 QAT RL 实践在
Megatron 侧用的 ``_FakeInt4QuantizationSTE`` 就是这个思路：每组按最大绝对值动态定 scale，
映射到 [-7, 7]，前向加上量化噪声，反向直通。

这里的实验：从随书检查点出发，同样的数据、步数、学习率做两次微调——

- 普通微调（不加伪量化），训练完再做 PTQ：对照组，排除“多训了几步”本身的影响；
- QAT 微调，训练完做同样的真量化。

两者都与直接 PTQ 比较，在 ``data/heldout.txt`` 上看困惑度。
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tinyllm.model import TinyLLM
from torch import Tensor, nn

from .quant import QuantSpec, fake_quantize


# --8<-- [start:ste]
class FakeQuantSTE(torch.autograd.Function):
    """前向：量化再反量化；反向：梯度原样通过（直通估计器）。"""

    @staticmethod
    def forward(ctx, w: Tensor, spec: QuantSpec) -> Tensor:
        return fake_quantize(w, spec)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None  # d(fake_quant(w))/dw 当作 1；spec 不需要梯度


class QATLinear(nn.Linear):
    """训练时的线性层：权重仍是浮点主权重，前向看到的是量化后的值。"""

    spec: QuantSpec

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, FakeQuantSTE.apply(self.weight, self.spec))

    # --8<-- [end:ste]


def to_qat(model: TinyLLM, spec: QuantSpec) -> TinyLLM:
    """把解码层里的 nn.Linear 原地换成共享同一份权重的 QATLinear。"""
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for child in parent.children():
                if type(child) is nn.Linear:
                    child.__class__ = QATLinear  # 参数不动，只换 forward
                    child.spec = spec
    return model


def from_qat(model: TinyLLM) -> TinyLLM:
    for m in model.modules():
        if isinstance(m, QATLinear):
            m.__class__ = nn.Linear
    return model


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 60
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.seq_len) <= 0 or self.lr <= 0:
            raise ValueError("steps、batch_size、seq_len、lr 都必须为正")


# --8<-- [start:finetune]
def finetune(
    model: TinyLLM, data: list[int], fc: FinetuneConfig, spec: QuantSpec | None, log=sys.stderr
) -> TinyLLM:
    """复制模型再微调；spec 不为 None 时做 QAT。返回浮点权重的模型（之后再真量化）。"""
    torch.manual_seed(fc.seed)
    model = copy.deepcopy(model).train()
    if spec is not None:
        to_qat(model, spec)
    tokens = torch.tensor(data)
    if len(tokens) <= fc.seq_len + 1:
        raise ValueError(f"训练数据只有 {len(tokens)} 个 token，不够一个长度 {fc.seq_len} 的样本")
    gen = torch.Generator().manual_seed(fc.seed)  # 两组实验抽到完全相同的批次
    opt = torch.optim.AdamW(model.parameters(), lr=fc.lr, weight_decay=0.0)
    t0 = time.perf_counter()
    for step in range(fc.steps):
        starts = torch.randint(0, len(tokens) - fc.seq_len - 1, (fc.batch_size,), generator=gen)
        batch = torch.stack([tokens[s : s + fc.seq_len + 1] for s in starts])  # (B, T + 1)
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == fc.steps - 1:
            rate = (step + 1) / (time.perf_counter() - t0)
            tag = "QAT" if spec else "FP"
            print(
                f"[{tag}] step {step + 1}/{fc.steps}  loss {loss.item():.3f}  {rate:.1f} step/s",
                file=log,
            )
    return from_qat(model).eval()
    # --8<-- [end:finetune]
