"""第 10 章 高级话题的示例代码。

子模块：``sandbox`` 与 ``agent_server``（Agent 代码沙箱及其 HTTP 服务）、
``hetero``（异构部署的成本模型）、``moe``（路由、容量与均衡损失）、
``vision``（视觉 token 与预填充成本）、``compiled``（torch.compile）、
``flash``（分块注意力与在线 softmax）、
``triton_ops`` 与 ``fused_bench``（Triton 融合算子及其测量）、
``lut``（查表低比特矩阵乘）。
"""
