"""模型配置：一个经过校验的 dataclass，加上能在 CPU 上跑的几个预设。

字段名与 Hugging Face ``LlamaConfig`` 的 ``config.json`` 一一对应，
所以 :func:`ModelConfig.from_hf_dict` / :meth:`ModelConfig.to_hf_dict` 只是换个壳。
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


# --8<-- [start:config]
@dataclass(frozen=True)
class ModelConfig:
    """Llama/Qwen 式解码器的结构参数。"""

    vocab_size: int = 259  # 256 个字节 + <bos> <eos> <pad>
    hidden_size: int = 256
    intermediate_size: int = 688  # SwiGLU 的中间维度
    num_hidden_layers: int = 4
    num_attention_heads: int = 8  # Query 头数
    num_key_value_heads: int = 2  # KV 头数：= Q 头数为 MHA，= 1 为 MQA，其间为 GQA
    head_dim: int | None = None  # 默认 hidden_size // num_attention_heads
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False  # Qwen 小模型共享输入输出嵌入；Llama 不共享
    bos_token_id: int = 256
    eos_token_id: int = 257
    pad_token_id: int = 258

    def __post_init__(self) -> None:
        positive = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
        )
        for f in positive:
            value = getattr(self, f)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{f} 必须是正整数，收到 {value!r}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size={self.hidden_size} 不能被 num_attention_heads="
                    f"{self.num_attention_heads} 整除；请显式给出 head_dim"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(f"head_dim 必须是正偶数（RoPE 两两旋转），收到 {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} 必须是 "
                f"num_key_value_heads={self.num_key_value_heads} 的整数倍（GQA 分组）"
            )
        if self.rope_theta <= 0 or self.rms_norm_eps <= 0:
            raise ValueError("rope_theta 与 rms_norm_eps 必须为正数")
        for f in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, f) < self.vocab_size:
                raise ValueError(f"{f}={getattr(self, f)} 超出词表 [0, {self.vocab_size})")

    @property
    def group_size(self) -> int:
        """每个 KV 头被多少个 Query 头共享。"""
        return self.num_attention_heads // self.num_key_value_heads

    # --8<-- [end:config]

    def num_parameters(self) -> int:
        """参数总数（与 ``sum(p.numel() for p in model.parameters())`` 相同）。"""
        h, d = self.hidden_size, self.head_dim
        attn = h * d * (self.num_attention_heads * 2 + self.num_key_value_heads * 2)
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h  # 两个 RMSNorm 的权重
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + self.num_hidden_layers * per_layer + h + head

    # ---- 与 Hugging Face config.json 互转 ----
    def to_hf_dict(self) -> dict:
        d = asdict(self)
        d["rope_parameters"] = {"rope_type": "default", "rope_theta": d.pop("rope_theta")}
        d.update(
            architectures=["LlamaForCausalLM"],
            model_type="llama",
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
        )
        return d

    @classmethod
    def from_hf_dict(cls, raw: dict) -> ModelConfig:
        """从 Llama/Qwen2/Qwen3 风格的 ``config.json`` 构造；不支持的结构给出明确错误。"""
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError(f"只支持 SwiGLU（hidden_act=silu），收到 {raw['hidden_act']!r}")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"不支持 rope_type={rope_type!r}（本书模型只实现标准 RoPE）")
        if raw.get("attention_bias") or raw.get("mlp_bias"):
            raise ValueError("不支持带 bias 的线性层（attention_bias/mlp_bias）")
        theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
        names = {f.name for f in fields(cls)} - {"rope_theta"}
        kwargs = {k: raw[k] for k in names if raw.get(k) is not None}
        kwargs.setdefault("num_key_value_heads", raw["num_attention_heads"])
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if isinstance(kwargs.get(k), list):
                kwargs[k] = kwargs[k][0]
        if "pad_token_id" not in kwargs:
            kwargs["pad_token_id"] = kwargs.get("eos_token_id", 0)
        return cls(rope_theta=float(theta), **kwargs)


PRESETS: dict[str, ModelConfig] = {
    # 随书附带、在书的正文上训练过的默认模型（约 3M 参数）。
    "default": ModelConfig(),
    # 给第 8 章当草稿模型用的更小版本：同一词表，2 层。
    "draft": ModelConfig(
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
    ),
    # 第 8 章比较草稿大小用的最小版本：1 层，隐藏维度 64。
    "draft-xs": ModelConfig(
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    ),
    # 单元测试用：随机初始化，毫秒级。
    "test": ModelConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    ),
}
