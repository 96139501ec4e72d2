"""第 8 章 投机采样：草稿模型 + 拒绝采样、接受率与加速比、n-gram、Jacobi 与 EAGLE 式草稿头。

子模块各讲一件事：``lm``（带 KV Cache、可回滚的模型封装）、
``speculative``（验证、生成循环与理论加速比）、
``proposers``（草稿模型、n-gram 提示查找、Jacobi 迭代）、``eagle``（在目标特征上训练的草稿头）、
``toy``（马尔可夫链上的分布检验）。
"""
