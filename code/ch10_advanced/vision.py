"""多模态：一张图变成多少个视觉 token，预填充要为它们付多少算力和 KV 显存。

两种做法：

- 固定分辨率（LLaVA-1.5，arXiv 2310.03744）：图先缩放到 336×336，CLIP ViT-L/14 切成 24×24 = 576 个
  patch，投影后原样送进语言模型。无论原图多大，都是 576 个 token。
- 动态分辨率（Qwen2-VL，arXiv 2409.12191）：长宽各取整到 28 的倍数并把像素数夹在
  [min_pixels, max_pixels] 之间，按 14×14 切 patch，再把相邻 2×2 个 patch 合成一个 token。
  token 数随分辨率变；``qwen2vl_resize`` 与 transformers 5.23.0 的 ``smart_resize``
  结果一致（有测试）。默认的 ``max_pixels`` 取 transformers 图像处理器的类默认值 28²·1280；
  Qwen2-VL 模型仓库自带的 preprocessor_config.json 设得更大，从仓库加载时以仓库的值为准。

视觉编码器是双向注意力的 ViT；语言模型的预填充沿用第 3 章的 ``prefill`` 工作量模型。
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ch03_gpu.roofline import prefill
from ch03_gpu.vram import kv_bytes_per_token
from tinyllm import ModelConfig


@dataclass(frozen=True)
class VisionTower:
    name: str
    layers: int
    width: int
    mlp: int
    patch: int


# CLIP ViT-L/14-336：openai/clip-vit-large-patch14-336 的 config.json；
# Qwen2-VL 视觉塔：transformers 5.23.0 中 Qwen2VLVisionConfig 的默认值
# （depth 32、embed_dim 1280、mlp_ratio 4）
CLIP_L14_336 = VisionTower("CLIP ViT-L/14-336", 24, 1024, 4096, 14)
QWEN2VL_VIT = VisionTower("Qwen2-VL ViT", 32, 1280, 5120, 14)


# --8<-- [start:tokens]
def fixed_tokens(image_size: int = 336, patch: int = 14) -> int:
    """固定分辨率：缩放到 image_size² 后的 patch 数，与原图大小无关。"""
    return (image_size // patch) ** 2


def qwen2vl_resize(
    height: int,
    width: int,
    patch: int = 14,
    merge: int = 2,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
    """长宽取整到 patch·merge 的倍数，像素总数夹在 [min_pixels, max_pixels]，尽量保持长宽比。"""
    if min(height, width) <= 0:
        raise ValueError(f"图像尺寸必须为正，收到 {height}×{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError("长宽比不能超过 200")
    f = patch * merge
    h, w = round(height / f) * f, round(width / f) * f
    if h * w > max_pixels:  # 太大：等比缩小，向下取整
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(f, math.floor(height / beta / f) * f), max(f, math.floor(width / beta / f) * f)
    elif h * w < min_pixels:  # 太小：等比放大，向上取整
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return h, w


def qwen2vl_tokens(
    height: int, width: int, patch: int = 14, merge: int = 2, **kw
) -> tuple[int, int]:
    """(视觉编码器处理的 patch 数, 送进语言模型的 token 数)。"""
    h, w = qwen2vl_resize(height, width, patch, merge, **kw)
    patches = (h // patch) * (w // patch)
    return patches, patches // (merge * merge)
    # --8<-- [end:tokens]


# --8<-- [start:cost]
def vit_flops(tower: VisionTower, patches: int) -> float:
    """每层：QKV 与输出投影 4·w²、MLP 2·w·mlp 的矩阵乘，加上双向注意力的 QKᵀ 与乘 V。"""
    linear = 2 * patches * (4 * tower.width**2 + 2 * tower.width * tower.mlp)
    attention = 4 * patches**2 * tower.width
    return tower.layers * (linear + attention)


@dataclass(frozen=True)
class ImageCost:
    patches: int
    llm_tokens: int
    vision_flops: float
    llm_prefill_flops: float  # 只算视觉 token 带来的那部分（加上 text_tokens 的整段减去纯文本）
    kv_bytes: float


def image_cost(
    llm: ModelConfig, tower: VisionTower, patches: int, llm_tokens: int, text_tokens: int = 0
) -> ImageCost:
    with_image = prefill(llm, 1, text_tokens + llm_tokens).flops
    text_only = prefill(llm, 1, text_tokens).flops if text_tokens else 0.0
    kv = kv_bytes_per_token(llm) * llm_tokens
    return ImageCost(patches, llm_tokens, vit_flops(tower, patches), with_image - text_only, kv)
    # --8<-- [end:cost]
