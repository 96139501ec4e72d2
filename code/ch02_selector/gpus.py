"""决策树用到的 GPU 规格：显存、显存带宽、BF16 稠密算力。

数字取自 NVIDIA 官方数据手册（Tensor Core 算力取“不含稀疏”的稠密值，即手册中带稀疏数值的一半）。
第 3 章有更完整的规格表；这里只留决策树需要的三列。
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: float  # 显存容量（GB）
    bandwidth_gbps: float  # 显存带宽（GB/s）
    bf16_tflops: float  # BF16 Tensor Core 稠密算力（TFLOPS）
    source: str


GPUS = {
    "a100-80gb": GpuSpec(
        "NVIDIA A100 80GB SXM",
        80,
        2039,
        312,
        "NVIDIA A100 Tensor Core GPU Datasheet, https://www.nvidia.com/en-us/data-center/a100/",
    ),
    "h100-sxm": GpuSpec(
        "NVIDIA H100 SXM",
        80,
        3350,
        989,
        "NVIDIA H100 Tensor Core GPU Datasheet, https://www.nvidia.com/en-us/data-center/h100/",
    ),
    "h200-sxm": GpuSpec(
        "NVIDIA H200 SXM",
        141,
        4800,
        989,
        "NVIDIA H200 Tensor Core GPU Datasheet, https://www.nvidia.com/en-us/data-center/h200/",
    ),
}
