"""本章用到的 ``vllm serve`` 参数，逐个对照 vLLM 0.33.0 源码核对过（路径为 wheel 内文件）。

测试会检查 Dockerfile / compose.yaml / 正文里出现的每个参数都在这张表里。
"""

VLLM_VERSION = "0.33.0"

# --8<-- [start:flags]
SERVE_FLAGS = {
    # 参数: (0.33.0 默认值, 核对位置)
    "--host": ("None（监听所有地址）", "vllm/entrypoints/common/cli_args.py FrontendArgs.host"),
    "--port": ("8000", "vllm/entrypoints/common/cli_args.py FrontendArgs.port"),
    "--served-model-name": ("模型名", "vllm/config/model.py ModelConfig.served_model_name"),
    "--api-key": (
        "None，回退到环境变量 VLLM_API_KEY",
        "vllm/entrypoints/serve/middleware/register.py",
    ),
    "--dtype": ("auto", "vllm/config/model.py ModelConfig.dtype"),
    "--max-model-len": ("None（取模型 config）", "vllm/config/model.py ModelConfig.max_model_len"),
    "--gpu-memory-utilization": ("0.92", "vllm/config/cache.py CacheConfig.gpu_memory_utilization"),
    "--tensor-parallel-size": ("1", "vllm/engine/arg_utils.py EngineArgs.tensor_parallel_size"),
    "--max-num-seqs": ("按硬件决定：256 或 1024", "vllm/engine/arg_utils.py get_batch_defaults"),
    "--max-num-batched-tokens": ("按硬件决定", "vllm/engine/arg_utils.py get_batch_defaults"),
    "--enable-prefix-caching": ("开启", "vllm/config/cache.py CacheConfig.enable_prefix_caching"),
    "--kv-cache-dtype": ("auto", "vllm/config/cache.py CacheConfig.cache_dtype"),
    "--enforce-eager": ("False", "vllm/config/model.py ModelConfig.enforce_eager"),
    "--trust-remote-code": ("False", "vllm/config/model.py ModelConfig.trust_remote_code"),
    "--download-dir": ("None（Hugging Face 默认缓存）", "vllm/engine/arg_utils.py EngineArgs"),
    "--generation-config": ("auto", "vllm/config/model.py ModelConfig.generation_config"),
    "--enable-log-requests": ("False", "vllm/engine/arg_utils.py AsyncEngineArgs"),
}
# 旧教程常见、但 vLLM 0.33.0 已移除的参数（传入即报 unrecognized arguments）
REMOVED_FLAGS = ("--swap-space", "--use-v2-block-manager")
# --8<-- [end:flags]
