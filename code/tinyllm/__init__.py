"""本书自己的小模型：Llama/Qwen 式解码器（RMSNorm、RoPE、GQA、SwiGLU），纯 PyTorch。

第 4–10 章都从这里导入模型，而不是各自复制一份::

    from tinyllm import load_default, ByteTokenizer, generate

    model, tok = load_default(), ByteTokenizer()
    print(tok.decode(generate(model, tok.encode("显存"), 40)))
"""

from .config import PRESETS, ModelConfig
from .generate import generate, generate_no_cache, sample, stream
from .hf import DEFAULT_DIR, load_default, load_pretrained, save_pretrained
from .model import TinyLLM
from .tokenizer import ByteTokenizer, to_hf_tokenizer

__all__ = [
    "DEFAULT_DIR",
    "PRESETS",
    "ByteTokenizer",
    "ModelConfig",
    "TinyLLM",
    "generate",
    "generate_no_cache",
    "load_default",
    "load_pretrained",
    "sample",
    "save_pretrained",
    "stream",
    "to_hf_tokenizer",
]
