"""第 10 章 高级话题的示例代码。

子模块：``sandbox`` 与 ``agent_server``（Agent 代码沙箱及其 HTTP 服务）、
``hetero``（异构部署的成本模型）、``moe``（路由、容量与均衡损失）、
``vision``（视觉 token 与预填充成本）、``compiled``（torch.compile）、
``flash``（分块注意力与在线 softmax）、
``triton_ops`` 与 ``fused_bench``（Triton 融合算子及其测量）、
``lut``（查表低比特矩阵乘）。
"""

import os
import sys

import torch

# 没有 GPU 时让 Triton 用解释器在 CPU 上执行内核（10.7 节）。triton 在导入时就把 tl.sum 这类
# 库函数编成 JIT 函数，所以解释器模式必须在它第一次被导入之前打开：放在包的入口，先 import
# ch10_advanced 再做别的。用过 torch 的优化器、torch.compile 都会顺带导入 triton，这里记下是否已晚。
TRITON_TOO_LATE = False
if not torch.cuda.is_available():
    TRITON_TOO_LATE = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
    os.environ.setdefault("TRITON_INTERPRET", "1")
