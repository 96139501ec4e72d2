"""GPU 监控：用 nvidia-ml-py（``import pynvml``）按固定间隔采样；没有 NVIDIA GPU 时退回 CPU 采样。

NVML 的“GPU 利用率”是采样周期内“至少有一个 kernel 在跑”的时间占比（NVML API Reference，
nvmlUtilization_t），不是 SM 的忙碌程度：一个只占 1 个 SM 的 kernel 一直在跑，也会显示 100%。
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    t: float  # 距开始的秒数
    util_pct: float  # GPU：有 kernel 在跑的时间占比；CPU：所有核的平均占用
    mem_used_gb: float
    mem_total_gb: float
    power_w: float | None = None
    temp_c: float | None = None


# --8<-- [start:nvml]
def nvml_samples(index: int, interval: float, count: int) -> Iterator[Sample]:
    """逐个产出第 ``index`` 块 GPU 的采样。调用方负责处理 ``pynvml.NVMLError``。"""
    import pynvml

    pynvml.nvmlInit()  # 没有驱动时抛 NVMLError_LibraryNotFound
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        t0 = time.perf_counter()
        for _ in range(count):
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)  # .gpu / .memory，单位 %
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)  # .used / .total，单位字节
            power_mw = pynvml.nvmlDeviceGetPowerUsage(handle)  # 毫瓦
            temp = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
            yield Sample(
                time.perf_counter() - t0,
                util.gpu,
                mem.used / 1e9,
                mem.total / 1e9,
                power_mw / 1e3,
                temp,
            )
            time.sleep(interval)
    finally:
        pynvml.nvmlShutdown()
    # --8<-- [end:nvml]


def gpu_name(index: int) -> str:
    import pynvml

    pynvml.nvmlInit()
    try:
        return pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
    finally:
        pynvml.nvmlShutdown()


# --8<-- [start:cpu]
def cpu_samples(interval: float, count: int) -> Iterator[Sample]:
    """同样的采样循环，数据换成 psutil 给出的 CPU 占用与内存。"""
    import psutil

    psutil.cpu_percent(None)  # 第一次调用只建立基线
    t0 = time.perf_counter()
    for _ in range(count):
        time.sleep(interval)
        mem = psutil.virtual_memory()
        yield Sample(
            time.perf_counter() - t0, psutil.cpu_percent(None), mem.used / 1e9, mem.total / 1e9
        )
    # --8<-- [end:cpu]


def format_sample(s: Sample) -> str:
    extra = ""
    if s.power_w is not None:
        extra = f"  {s.power_w:6.1f} W  {s.temp_c:3.0f} °C"
    bar = "█" * round(s.util_pct / 5)
    return (
        f"{s.t:5.1f} s  util {s.util_pct:5.1f}% {bar:<20}  "
        f"mem {s.mem_used_gb:6.2f}/{s.mem_total_gb:.1f} GB{extra}"
    )
