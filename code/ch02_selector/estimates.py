"""决策树依据的三个一阶估算：权重显存、解码下限、预填充时间。

都是“光速”估算（只看字节数和 FLOPs，忽略 kernel 开销与并行损耗），
用来判断一条路走不走得通，而不是预测线上延迟。推导见第 3 章 3.3、3.5 节。
"""


# --8<-- [start:estimates]
def weight_gb(params: float, bits: int) -> float:
    """权重占用的显存（GB）：参数量 × 每参数字节数。"""
    return params * bits / 8 / 1e9


def decode_floor_ms(active_params: float, bits: int, bandwidth_gbps: float, num_gpus: int) -> float:
    """每生成一个 token 至少要把激活的权重从显存读一遍：时间下限 = 字节数 / 总带宽。"""
    return weight_gb(active_params, bits) / (bandwidth_gbps * num_gpus) * 1000


def prefill_ms(
    active_params: float, prompt_tokens: int, tflops: float, num_gpus: int, mfu: float = 0.5
) -> float:
    """预填充约需 2 × 参数量 × token 数次浮点运算；按 mfu 比例的峰值算力估时间。"""
    flops = 2 * active_params * prompt_tokens
    return flops / (tflops * 1e12 * num_gpus * mfu) * 1000


def expert_coverage(experts_per_token: int, num_experts: int, batch_tokens: int) -> float:
    """路由均匀时，一步解码里至少被一个 token 选中的路由专家比例：1 - (1 - k/E)^B。

    “按激活参数算带宽”只对单个 token 成立；批量一大，几乎每个专家都要读一遍。
    """
    if not 0 < experts_per_token <= num_experts or batch_tokens < 1:
        raise ValueError("需要 0 < experts_per_token <= num_experts，batch_tokens >= 1")
    return 1 - (1 - experts_per_token / num_experts) ** batch_tokens


# --8<-- [end:estimates]
