"""把量化用到本书模型的线性层上：真量化的 ``QuantLinear``（W4A16 / W8A16），
以及量化前后的显存、logits 与困惑度对比。

``QuantLinear`` 只存整数权重（INT4 按 8 个一组打包进 int32）和每组的 scale，前向时反量化成
激活的精度再做矩阵乘，这正是 W4A16 的含义：权重 4 位存储，激活和计算仍是 16 位。GPU 上的
Marlin 内核把“解包 + 反量化”融进矩阵乘，这里分两步写，数值相同。

困惑度在 ``data/heldout.txt`` 上算：它是第 3–6 章开篇页的一份冻结副本，
不在随书检查点的训练语料（``tinyllm/checkpoint/training.json`` 里的 ``corpus_files``）之中。
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tinyllm.model import TinyLLM
from torch import Tensor, nn

from .pack import pack_int4, unpack_int4
from .quant import QTensor, QuantSpec, quantize

HELDOUT = Path(__file__).with_name("data") / "heldout.txt"
# 微调（QAT 与对照组）用的文本：随书检查点训练页面（training.json 的 corpus_files）的一份冻结副本，
# 这样页面以后改字，本章的数字也不变
FINETUNE = Path(__file__).with_name("data") / "finetune.txt"


# --8<-- [start:quant-linear]
class QuantLinear(nn.Module):
    """只存量化后的权重；前向时解包、反量化，再和激活相乘（W4A16 / W8A16）。"""

    def __init__(self, linear: nn.Linear, spec: QuantSpec):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("本书模型的线性层没有 bias")
        qt = quantize(linear.weight, spec)
        self.spec, self.shape = spec, qt.shape
        q = qt.q.reshape(qt.shape[0], -1)  # (out, in)，按组量化时 in 可能补到了 group_size 的倍数
        packed = pack_int4(q, signed=spec.symmetric) if spec.bits == 4 else q.to(torch.int16)
        self.register_buffer("qweight", packed)
        self.register_buffer("scale", qt.scale.half())  # (groups, 1)，和 GPTQ/AWQ 一样用 fp16
        self.register_buffer("zero", qt.zero.to(torch.int16))
        self.nbytes = qt.nbytes()

    def int_weight(self) -> Tensor:
        if self.spec.bits == 4:
            return unpack_int4(self.qweight, signed=self.spec.symmetric)
        return self.qweight

    def weight(self) -> Tensor:
        q = self.int_weight()  # (out, in) 整数
        groups = q.reshape(self.scale.shape[0], -1).float()
        w = ((groups - self.zero) * self.scale.float()).reshape(self.shape[0], -1)
        return w[:, : self.shape[1]]  # 去掉按组补的 0

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight().to(x.dtype))

    # --8<-- [end:quant-linear]


# --8<-- [start:quantize-model]
def quantize_model(model: TinyLLM, spec: QuantSpec) -> TinyLLM:
    """复制一份模型，把每个解码层里的 7 个线性层换成 QuantLinear。

    嵌入层和 lm_head 保持原精度：它们对误差最敏感，GPTQ/AWQ 的常见配置也不量化它们。
    """
    qmodel = copy.deepcopy(model)
    for layer in qmodel.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, QuantLinear(child, spec))
    return qmodel
    # --8<-- [end:quantize-model]


def dequantized(model: TinyLLM) -> TinyLLM:
    """把 QuantLinear 换回普通 nn.Linear，权重是反量化后的值：数值与量化模型相同，
    但 CPU 上不必每次前向都解包（第 8 章拿“INT4 版的目标模型”当草稿时用）。"""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, QuantLinear):
                linear = nn.Linear(child.shape[1], child.shape[0], bias=False)
                linear.weight.data = child.weight()
                setattr(parent, name, linear)
    return model


def weight_bytes(model: nn.Module, float_bytes: int = 2) -> int:
    """按部署存储算权重字节数：QuantLinear 用其打包大小，其余参数按 float_bytes（bf16 = 2）。"""
    total = sum(m.nbytes for m in model.modules() if isinstance(m, QuantLinear))
    return total + sum(p.numel() * float_bytes for p in model.parameters())


def linear_bytes(model: nn.Module, float_bytes: int = 2) -> int:
    """只算解码层线性层（被量化的那部分）的字节数。"""
    total = 0
    for m in model.modules():
        if isinstance(m, QuantLinear):
            total += m.nbytes
        elif isinstance(m, nn.Linear) and m is not getattr(model, "lm_head", None):
            total += m.weight.numel() * float_bytes
    return total


def heldout_ids(path: Path = HELDOUT) -> list[int]:
    return list(path.read_bytes())  # 本书模型的分词器就是 UTF-8 字节


def finetune_ids(path: Path = FINETUNE) -> list[int]:
    return list(path.read_bytes())


def windows(ids: list[int], length: int = 256) -> Tensor:
    """切成不重叠的 (N, length + 1) 窗口：前 length 个作输入，后移一位作标签。"""
    n = (len(ids) - 1) // length
    if n == 0:
        raise ValueError(f"文本只有 {len(ids)} 个 token，不够一个长度 {length} 的窗口")
    return torch.tensor(ids[: n * length + 1]).unfold(0, length + 1, length)[:n]


# --8<-- [start:eval]
@torch.inference_mode()
def perplexity(model: TinyLLM, ids: list[int], length: int = 256) -> float:
    """逐字节困惑度 exp(平均交叉熵)：越低越好。"""
    w = windows(ids, length)
    logits = model(w[:, :-1])  # (N, T, vocab)
    return math.exp(F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten()).item())


@torch.inference_mode()
def logit_drift(ref: TinyLLM, model: TinyLLM, ids: list[int], length: int = 256) -> dict:
    """和原模型比：logits 最大偏差、平均 KL(原 ‖ 量化) 与 top-1 一致率。"""
    x = windows(ids, length)[:, :-1]
    return compare_logits(ref(x).float(), model(x).float())


def compare_logits(a: Tensor, b: Tensor) -> dict:
    """a 是参照 logits，b 是被比较的 logits，形状相同 (..., vocab)。"""
    kl = F.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none")
    return {
        "max_logit_diff": (a - b).abs().max().item(),
        "kl": kl.sum(-1).mean().item(),
        "top1_agree": (a.argmax(-1) == b.argmax(-1)).float().mean().item(),
    }
    # --8<-- [end:eval]


@torch.inference_mode()
def evaluate(model: TinyLLM, ids: list[int], ref_logits: Tensor | None = None, length: int = 256):
    """一次前向同时得到困惑度和（给了参照 logits 时）漂移指标；返回 (指标, 本模型的 logits)。"""
    w = windows(ids, length)
    logits = model(w[:, :-1]).float()  # (N, T, vocab)
    ce = F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten()).item()
    metrics = {"ppl": math.exp(ce)}
    if ref_logits is not None:
        metrics |= compare_logits(ref_logits, logits)
    return metrics, logits


def quantized_weight(qlinear: QuantLinear) -> QTensor:
    """把 QuantLinear 里的存储还原成 QTensor（测试用：检查打包前后完全一致）。"""
    groups = qlinear.scale.shape[0]
    return QTensor(
        qlinear.int_weight().reshape(groups, -1),
        qlinear.scale.float(),
        qlinear.zero.int(),
        qlinear.spec,
        qlinear.shape,
    )
