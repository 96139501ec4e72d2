"""读写 Hugging Face 格式的模型目录（``config.json`` + ``*.safetensors``）。

本书模型的参数名与 ``LlamaForCausalLM`` 相同，所以加载只是：读配置 → 建模型 → ``load_state_dict``。
随书的默认模型也按这个格式保存，``transformers`` 和 vLLM 可以直接打开同一个目录。
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import ModelConfig
from .model import TinyLLM
from .tokenizer import to_hf_tokenizer

DEFAULT_DIR = Path(__file__).parent / "checkpoint"


# --8<-- [start:load]
def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32) -> TinyLLM:
    """从本地目录加载同结构（Llama/Qwen 式）的 HF 权重；不联网。"""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} 下没有 config.json：不是 Hugging Face 模型目录")
    cfg = ModelConfig.from_hf_dict(json.loads((path / "config.json").read_text("utf-8")))
    files = sorted(path.glob("*.safetensors"))  # 大模型会分片：model-00001-of-00004.safetensors …
    if not files:
        raise FileNotFoundError(f"{path} 下没有 *.safetensors 权重文件")
    state = {}
    for f in files:
        state.update(load_file(f))
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # 共享嵌入：lm_head 就是 embed_tokens
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model = TinyLLM(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"权重与结构不符：缺少 {missing[:3]}，多出 {unexpected[:3]}")
    return model.to(dtype).eval()
    # --8<-- [end:load]


def save_pretrained(model: TinyLLM, path: str | Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """按 HF 格式保存模型与分词器；``dtype`` 决定磁盘上的精度（默认 bf16，体积减半）。"""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    hf = model.config.to_hf_dict() | {"dtype": str(dtype).removeprefix("torch.")}
    (path / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n", "utf-8")
    gen = {
        "bos_token_id": model.config.bos_token_id,
        "eos_token_id": model.config.eos_token_id,
        "pad_token_id": model.config.pad_token_id,
    }
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", "utf-8")
    to_hf_tokenizer().save_pretrained(path)


def load_model(path: str | Path | None = None, dtype: torch.dtype = torch.float32) -> TinyLLM:
    """命令行 ``--model`` 的约定：给了目录就加载它，没给就用随书的默认模型。"""
    return load_pretrained(path, dtype) if path else load_default(dtype)


def load_default(dtype: torch.dtype = torch.float32) -> TinyLLM:
    """随书附带、在本书正文上训练过的默认模型。"""
    if not (DEFAULT_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"缺少默认模型 {DEFAULT_DIR}；在仓库根目录运行 `make model` 重新训练"
        )
    return load_pretrained(DEFAULT_DIR, dtype)
