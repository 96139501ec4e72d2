"""第 9 章 生产环境部署：OpenAI 兼容服务、压测、网关与故障注入、部署清单、成本与 RL 资源分配。

子模块：``engine``（在线连续批处理引擎）、``protocol``（请求校验与 OpenAI 格式）、``security``
（API 密钥与限流）、``metrics``（Prometheus 指标）、``server``（FastAPI 服务与优雅退出）、
``loadgen``（压测）、``router``（多副本网关：健康检查、重试、最少在途请求）、``faults``（故障注入）、
``cost``（成本与 ROI）、``rl``（RL 训练与 rollout 的资源分配模拟）、``plugins``（vLLM 插件发现）。
"""
