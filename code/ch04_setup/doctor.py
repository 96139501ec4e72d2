"""环境体检：Python、PyTorch、CUDA、驱动、GPU、vLLM、磁盘、端口，逐项给出结论与修复建议。

退出码（适合写进 CI 或容器启动脚本）：
    0  全部通过：可以在 GPU 上跑 vLLM
    1  只能跑 CPU：本书的 CPU 示例可用，但没有 GPU / CUDA / vLLM
    2  命令行参数错误（argparse）
    3  有阻塞问题：例如 Python 太旧、缺 PyTorch、端口被占、磁盘不足
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import socket
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"
MARK = {OK: "✓", WARN: "!", FAIL: "✗"}
# vLLM 0.33.0 的 wheel 元数据：Requires-Python >=3.11,<3.15；torch==2.14.0（CUDA 13.0 构建）。
VLLM_PYTHON = ((3, 11), (3, 15))


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --8<-- [start:checks]
def check_python() -> Check:
    v = sys.version_info[:2]
    detail = f"Python {sys.version.split()[0]}"
    if v < (3, 11):
        return Check("Python", FAIL, detail, "本书代码与 vLLM 0.33.0 都需要 Python ≥ 3.11")
    if v >= VLLM_PYTHON[1]:
        return Check("Python", WARN, detail, "vLLM 0.33.0 只支持 Python 3.11–3.14")
    return Check("Python", OK, detail)


def check_torch() -> tuple[Check, Check]:
    """返回 (PyTorch, CUDA) 两项。只在这里导入 torch：没装时给出提示而不是抛异常。"""
    if importlib.util.find_spec("torch") is None:
        fail = Check("PyTorch", FAIL, "未安装", "pip install torch==2.13.0（CPU 即可跑本书示例）")
        return fail, Check("CUDA", WARN, "跳过：没有 PyTorch")
    import torch

    built = torch.version.cuda  # CPU 版为 None
    torch_check = Check("PyTorch", OK, f"{torch.__version__}（CUDA 构建：{built or '无，CPU 版'}）")
    if built is None:
        return torch_check, Check("CUDA", WARN, "CPU 版 PyTorch", "GPU 机器上安装 CUDA 版 PyTorch")
    if not torch.cuda.is_available():
        hint = "驱动未装或版本太旧：运行 nvidia-smi 查看驱动支持的最高 CUDA 版本"
        return torch_check, Check("CUDA", FAIL, f"PyTorch 为 CUDA {built} 构建，但不可用", hint)
    return torch_check, Check("CUDA", OK, f"CUDA {built}，{torch.cuda.device_count()} 块 GPU")


def check_driver_and_gpus() -> tuple[Check, list[Check]]:
    try:
        import pynvml
    except ImportError:
        return Check("驱动", WARN, "未安装 nvidia-ml-py", "pip install nvidia-ml-py"), []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound as e:  # 没有驱动：这台机器本来就没有 NVIDIA GPU
        return Check("驱动", WARN, f"NVML 不可用：{e}", "无 NVIDIA GPU 时可忽略"), []
    except pynvml.NVMLError as e:  # 有驱动库却初始化失败：驱动坏了或容器没拿到设备
        return Check("驱动", FAIL, f"NVML 初始化失败：{e}", "运行 nvidia-smi 查看驱动状态"), []
    try:
        driver = Check("驱动", OK, f"NVIDIA 驱动 {pynvml.nvmlSystemGetDriverVersion()}")
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            detail = (
                f"{pynvml.nvmlDeviceGetName(h)}，{mem.total / 2**30:.0f} GiB，算力 {major}.{minor}"
            )
            if major < 8:  # vLLM 对 BF16 的要求：compute capability ≥ 8.0
                gpus.append(Check(f"GPU {i}", WARN, detail, "不支持 BF16：vLLM 需加 --dtype half"))
            else:
                gpus.append(Check(f"GPU {i}", OK, detail))
        return driver, gpus
    finally:
        pynvml.nvmlShutdown()


def check_vllm() -> Check:
    v = version_of("vllm")  # 只读元数据，不 import：无 GPU 时 import vllm 也可能报错
    if v is None:
        return Check(
            "vLLM", WARN, "未安装", "GPU 机器上：pip install vllm==0.33.0（单独的虚拟环境）"
        )
    return Check("vLLM", OK, f"vllm {v}")


def check_disk(path: Path, min_gb: float) -> Check:
    probe = path if path.exists() else Path.home()
    free = shutil.disk_usage(probe).free / 1e9
    detail = f"{probe} 可用 {free:.0f} GB"
    if free < min_gb:
        return Check("磁盘", FAIL, detail, f"至少留 {min_gb:g} GB 给模型权重与镜像")
    return Check("磁盘", OK, detail)


def check_port(host: str, port: int) -> Check:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # 与 vLLM 绑定端口的方式一致
        try:
            s.bind((host, port))
        except OSError as e:  # Linux 上端口被占是 [Errno 98] Address already in use
            fix = f"换端口（vllm serve --port）或找出占用者：ss -ltnp | grep :{port}"
            return Check("端口", FAIL, f"{host}:{port} 不可用：{e.strerror}", fix)
    return Check("端口", OK, f"{host}:{port} 空闲")
    # --8<-- [end:checks]


def run_all(disk_path: Path, min_disk_gb: float, host: str, port: int) -> list[Check]:
    torch_check, cuda_check = check_torch()
    driver, gpus = check_driver_and_gpus()
    no_gpu_machine = driver.status == WARN and not gpus  # 找不到驱动库：本来就没有 GPU
    if cuda_check.status == FAIL and no_gpu_machine:  # CUDA 版 PyTorch 装在无 GPU 的机器上
        cuda_check = Check("CUDA", WARN, cuda_check.detail + "；本机没有 NVIDIA GPU")
    return [
        check_python(),
        torch_check,
        cuda_check,
        driver,
        *gpus,
        check_vllm(),
        check_disk(disk_path, min_disk_gb),
        check_port(host, port),
    ]


# --8<-- [start:exit-code]
def exit_code(checks: list[Check]) -> int:
    if any(c.status == FAIL for c in checks):
        return 3
    gpu_ready = all(c.status == OK for c in checks if c.name in ("CUDA", "驱动", "vLLM"))
    return 0 if gpu_ready else 1
    # --8<-- [end:exit-code]


def display_width(text: str) -> int:
    """终端里汉字占两列。"""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def report(checks: list[Check]) -> str:
    width = max(display_width(c.name) for c in checks)
    lines = []
    for c in checks:
        pad = " " * (width - display_width(c.name))
        lines.append(f"[{MARK[c.status]}] {c.name}{pad}  {c.detail}")
        if c.fix:
            lines.append(f"    {' ' * width}  → {c.fix}")
    return "\n".join(lines)


SUMMARY = {
    0: "结论：全部通过，可以在 GPU 上运行 vLLM。",
    1: "结论：只能跑 CPU 示例（本书默认模型可用）；要跑 vLLM 需要 NVIDIA GPU、CUDA 与 vLLM。",
    3: "结论：有阻塞问题，按上面 ✗ 项的提示修复后再试。",
}
