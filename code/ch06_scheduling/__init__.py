"""第 6 章 请求调度策略：拼接批次、静态批处理与连续批处理、调度策略与抢占、PD 分离。

子模块：``trace``（可回放的请求轨迹）、``ragged``（块对角掩码的拼接批次与 padding 计数）、
``scheduler``（迭代级调度器）、``executor``（跑真模型或按 Roofline 计时）、
``engine``（事件驱动的引擎循环与指标）、``pd``（Prefill/Decode 分离 vs 混合部署）。
"""
