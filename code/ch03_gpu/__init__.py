"""第 3 章代码：显存计算器、GPU 规格表、Roofline 瓶颈诊断与 GPU 监控。

按模块导入，例如 ``from ch03_gpu.vram import estimate``、``from ch03_gpu.specs import load_gpus``。
包本身不预先导入 PyTorch：第 2 章只用到规格表，不必为它付出加载 PyTorch 的时间。
"""
