"""GPU 规格表（``data/gpus.yml``）：每行都带出处，3.6 节的表格与性价比分析由它生成。"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data" / "gpus.yml"


@dataclass(frozen=True)
class GpuSpec:
    key: str
    name: str
    vendor: str
    architecture: str
    segment: str  # consumer | datacenter
    year: int
    memory_gb: float
    memory_type: str
    bandwidth_gbps: float | None  # 显存带宽，GB/s
    bf16_tflops: float | None  # BF16 Tensor 稠密算力
    fp8_tflops: float | None
    tdp_w: float | None
    interconnect: str
    sm_count: int | None
    l2_mb: float | None
    source: str
    note: str = ""

    # --8<-- [start:ratios]
    @property
    def ridge_flop_per_byte(self) -> float | None:
        """屋脊点：算力 ÷ 带宽。算术强度低于它的工作负载受带宽限制。"""
        if self.bf16_tflops is None or self.bandwidth_gbps is None:
            return None
        return self.bf16_tflops * 1e12 / (self.bandwidth_gbps * 1e9)

    @property
    def sweep_ms(self) -> float | None:
        """把整块显存读一遍要多久：装满权重时，单步解码时间的下限。"""
        if self.bandwidth_gbps is None:
            return None
        return self.memory_gb / self.bandwidth_gbps * 1e3

    # --8<-- [end:ratios]


@cache
def load_gpus() -> dict[str, GpuSpec]:
    rows = yaml.safe_load(DATA.read_text("utf-8"))
    names = {f.name for f in fields(GpuSpec)}
    gpus = {}
    for row in rows:
        if set(row) - names or not row.get("source"):
            raise ValueError(f"{DATA}: {row.get('key')} 的字段不合规或缺少出处")
        gpus[row["key"]] = GpuSpec(**row)
    return gpus


def fmt(value, unit: str = "", digits: int = 0) -> str:
    """表格单元格：``None`` 显示为“—”。"""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def markdown_table(gpus: list[GpuSpec]) -> str:
    """3.6 节的规格表（Markdown）。"""
    lines = [
        "| GPU | 架构 | 显存 | 带宽 (GB/s) | BF16 (TFLOPS) | FP8 (TFLOPS) "
        "| 屋脊点 (FLOP/B) | TDP (W) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in gpus:
        lines.append(
            f"| {g.name} | {g.architecture} | {g.memory_gb:g} GB {g.memory_type} | "
            f"{fmt(g.bandwidth_gbps)} | {fmt(g.bf16_tflops, digits=1)} | "
            f"{fmt(g.fp8_tflops, digits=1)} | {fmt(g.ridge_flop_per_byte)} | {fmt(g.tdp_w)} |"
        )
    return "\n".join(lines)
