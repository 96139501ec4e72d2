"""决策树用到的 GPU 规格：显存、显存带宽、BF16 稠密算力。

数字来自第 3 章的规格表 ``ch03_gpu/data/gpus.yml``（每行带出处）；这里只挑决策树预设的三块卡。
"""

from ch03_gpu.specs import GpuSpec, load_gpus

GPUS: dict[str, GpuSpec] = {k: load_gpus()[k] for k in ("a100-80gb", "h100-sxm", "h200-sxm")}

__all__ = ["GPUS", "GpuSpec"]
