"""第 4 章代码：环境体检、transformers 推理与基准、vLLM 快速入门、报错诊断、Docker 部署文件。

按模块导入，例如 ``from ch04_setup.infer import load, generate_batch``。
"""
