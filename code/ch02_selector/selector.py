"""技术选型决策树：给定模型、硬件和服务目标，推荐该先读、先做哪些优化。

每条规则都是一个可检查的不等式（放不放得下、延迟下限是否超标……），
推荐理由里带着算出来的数字，读者可以逐条核对。
"""

import math
from dataclasses import dataclass

from .estimates import decode_floor_ms, prefill_ms, weight_gb
from .gpus import GpuSpec

# 推荐里引用的章节（编号与 V7.0 目录一致）。
SECTIONS = {
    "3.3": "显存计算公式",
    "5.4": "KV Cache 优化技术",
    "6.3": "动态批处理（Continuous Batching）",
    "6.6": "实战配置",
    "6.7": "Prefill-Decode 分离（PD 分离）",
    "7.3": "常用量化格式（INT4、FP4、FP8、NVFP4）",
    "7.5": "KV Cache 量化",
    "8.2": "投机采样原理",
    "9.2": "部署架构设计",
    "10.3": "MoE 模型推理优化",
}


@dataclass(frozen=True)
class Scenario:
    params: float  # 总参数量，例如 70e9
    gpu: GpuSpec
    num_gpus: int = 1
    weight_bits: int = 16  # 当前权重精度：16 = BF16/FP16
    active_params: float | None = None  # MoE 每个 token 激活的参数量；None 表示稠密模型
    p99_tpot_ms: float | None = None  # 每个输出 token 的 p99 延迟目标
    p99_ttft_ms: float | None = None  # 首 token 的 p99 延迟目标
    prompt_tokens: int = 1024
    concurrency: int = 1
    shared_prefix: float = 0.0  # 请求之间共享的前缀占提示词的比例
    usable_fraction: float = 0.9  # 显存中可留给权重和 KV Cache 的比例

    def __post_init__(self):
        if self.params <= 0:
            raise ValueError("params 必须为正数")
        if self.num_gpus < 1 or self.concurrency < 1 or self.prompt_tokens < 1:
            raise ValueError("num_gpus、concurrency、prompt_tokens 都至少为 1")
        if self.weight_bits not in (4, 8, 16, 32):
            raise ValueError("weight_bits 只能是 4、8、16、32")
        if self.active_params is not None and not 0 < self.active_params <= self.params:
            raise ValueError("active_params 必须在 (0, params] 之间")
        for name in ("p99_tpot_ms", "p99_ttft_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} 必须为正数")
        if not 0 <= self.shared_prefix < 1:
            raise ValueError("shared_prefix 必须在 [0, 1) 之间")
        if not 0 < self.usable_fraction <= 1:
            raise ValueError("usable_fraction 必须在 (0, 1] 之间")

    @property
    def active(self) -> float:
        return self.active_params or self.params

    @property
    def usable_gb(self) -> float:
        return self.gpu.memory_gb * self.num_gpus * self.usable_fraction


@dataclass(frozen=True)
class Advice:
    level: str  # 必须 / 建议 / 可选
    technique: str
    section: str
    reason: str

    @property
    def section_title(self) -> str:
        return f"{self.section} {SECTIONS[self.section]}"


# --8<-- [start:recommend]
def recommend(s: Scenario) -> list[Advice]:
    """按“先放得下、再跑得快、最后跑得省”的顺序给出建议。"""
    advice = []
    weights = weight_gb(s.params, s.weight_bits)

    # 1. 放得下吗？权重必须先装进显存，剩下的才是 KV Cache。
    if weights > s.usable_gb:
        options = []
        for bits in (b for b in (8, 4) if b < s.weight_bits):
            size = weight_gb(s.params, bits)
            room = (
                "可放下并给 KV Cache 留出 30% 以上"
                if size <= 0.7 * s.usable_gb
                else ("能放下但几乎不剩 KV Cache 空间" if size <= s.usable_gb else "仍放不下")
            )
            options.append(f"{bits} bit 为 {size:.1f} GB，{room}")
        advice.append(
            Advice(
                "必须",
                "权重量化",
                "7.3",
                f"{s.weight_bits} bit 权重 {weights:.1f} GB 超过可用显存 {s.usable_gb:.1f} GB；"
                + "；".join(options),
            )
        )
        per_gpu = s.gpu.memory_gb * s.usable_fraction
        need = math.ceil(weights / (per_gpu * 0.7))  # 给 KV Cache 留 30%
        need = 2 ** math.ceil(math.log2(need))  # 并行度通常取 2 的幂，才能整除注意力头数
        how = "专家并行（EP）" if s.active_params else "张量并行（TP）"
        keep = "不量化" if s.weight_bits == 16 else f"保持 {s.weight_bits} bit 精度"
        advice.append(
            Advice(
                "必须",
                f"多卡{how}",
                "9.2",
                f"{keep}则至少需要 {need} 张 {s.gpu.name}（取 2 的幂），"
                "才能在放下权重后给 KV Cache 留约 30%",
            )
        )
    elif s.usable_gb - weights < 0.3 * s.usable_gb:
        advice.append(
            Advice(
                "建议",
                "KV Cache 压缩（GQA/分页/量化）",
                "5.4",
                f"权重 {weights:.1f} GB 之后只剩 {s.usable_gb - weights:.1f} GB 给 KV Cache，"
                "并发和上下文长度都会被它卡住",
            )
        )
        advice.append(
            Advice("建议", "KV Cache 量化", "7.5", "FP8 KV Cache 让同样的显存多装一倍 token")
        )

    # 2. 跑得快吗？解码受显存带宽限制，每步至少读一遍激活权重。
    floor = decode_floor_ms(s.active, s.weight_bits, s.gpu.bandwidth_gbps, s.num_gpus)
    if s.p99_tpot_ms is not None:
        if floor > s.p99_tpot_ms:
            advice.append(
                Advice(
                    "必须",
                    "降低每步读取的字节数（量化或多卡）",
                    "7.3",
                    f"解码下限 {floor:.1f} ms/token 已超过目标 {s.p99_tpot_ms:g} ms，"
                    "调度参数救不回来",
                )
            )
        elif floor > 0.5 * s.p99_tpot_ms:
            advice.append(
                Advice(
                    "建议",
                    "投机采样",
                    "8.2",
                    f"解码下限 {floor:.1f} ms/token 占了目标 {s.p99_tpot_ms:g} ms 的一半以上，"
                    "批处理稍一加大就会超标；一次前向验证多个 token 可以摊薄这次读取",
                )
            )
    if s.p99_ttft_ms is not None:
        uncached = s.prompt_tokens * (1 - s.shared_prefix)
        est = prefill_ms(s.active, max(1, round(uncached)), s.gpu.bf16_tflops, s.num_gpus)
        if est > s.p99_ttft_ms:
            advice.append(
                Advice(
                    "必须",
                    "缩短预填充（多卡或 PD 分离）",
                    "6.7",
                    f"按 50% MFU 估算，{uncached:.0f} 个未命中缓存的 token 预填充约 {est:.0f} ms，"
                    f"超过首 token 目标 {s.p99_ttft_ms:g} ms",
                )
            )

    # 3. 跑得省吗？并发、共享前缀和 MoE 各有专门的手段。
    if s.concurrency > 1:
        advice.append(
            Advice(
                "建议",
                "连续批处理与调度参数",
                "6.3",
                f"{s.concurrency} 路并发：迭代级调度让新请求不必等整批结束",
            )
        )
        if s.prompt_tokens >= 2048:
            advice.append(
                Advice(
                    "建议",
                    "分块预填充（chunked prefill）",
                    "6.6",
                    f"{s.prompt_tokens} token 的长提示词一次性预填充会卡住同批次的解码",
                )
            )
    if s.shared_prefix >= 0.2:
        advice.append(
            Advice(
                "建议",
                "前缀缓存（Prefix Caching）",
                "5.4",
                f"{s.shared_prefix:.0%} 的提示词是共享前缀，命中后这部分预填充可以跳过",
            )
        )
    if s.active_params is not None and s.active_params < s.params:
        advice.append(
            Advice(
                "建议",
                "MoE 专家并行",
                "10.3",
                f"每个 token 只激活 {s.active_params / 1e9:.0f}B / {s.params / 1e9:.0f}B 参数，"
                "权重显存按总量算；带宽和算力只在小批量时按激活量算，批量大时几乎每个专家都要读",
            )
        )
    if s.concurrency >= 32 and s.prompt_tokens >= 2048 and s.p99_tpot_ms and s.p99_ttft_ms:
        advice.append(
            Advice(
                "可选",
                "Prefill-Decode 分离",
                "6.7",
                "高并发、长提示词，且首 token 与每 token 延迟都有硬目标：两类阶段互相干扰最严重",
            )
        )
    return advice


# --8<-- [end:recommend]
