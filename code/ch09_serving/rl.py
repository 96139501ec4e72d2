"""RL 后训练里的推理：rollout 与训练怎么排，GPU 才不闲着。

每一轮先用当前策略生成一批回答（rollout，就是推理服务），再拿它们训练一步。回答长度是长尾的：
少数回答特别长，整批要等最长的那条写完，早写完的卡只能干等——这就是 RL 后训练的长尾问题。
三种编排：

- ``colocated``：同一批卡先全部做 rollout、再全部做训练（verl 的 HybridFlow 即属此类）；
- ``disagg-static``：R 张卡专做 rollout，其余训练，同步 on-policy：训练等数据、rollout 等新权重；
- ``disagg-async``：同样的切分，但 rollout 领先训练一步（one-step off-policy，见 Noukhovitch 等
  2024 年的 Asynchronous RLHF），并且每个推理引擎写完自己那份就拿可用的最新权重开始下一批。
  代价是数据比策略旧一步（``policy_lag`` = 1）。

模型是刻意简单的，所有数字都来自下面的假设，不是测量值：解码一步耗时固定（每个在跑的序列前进一个
token），每个引擎有 ``concurrency`` 个槽位做连续批处理；训练耗时 = 本批 token 数 × 单卡每 token
训练耗时 / 训练卡数；权重同步、切换显存布局的开销不计。没建模的还有 Kimi k1.5 的 partial rollout
（超长回答截断、下一轮接着写），它对付的是引擎内部的尾巴，即 ``underfilled_fraction``。
"""

from __future__ import annotations

import argparse
import heapq
from dataclasses import dataclass, fields

import numpy as np
from ch01_economics.cli import count, positive

from .cost import nonnegative

STRATEGIES = ("colocated", "disagg-static", "disagg-async")


# --8<-- [start:config]
@dataclass(frozen=True)
class RlConfig:
    num_gpus: int = 8
    rollout_gpus: int = 6  # 分离部署时做 rollout 的卡数，其余的卡训练
    batch_size: int = 512  # 每轮生成的回答条数
    iterations: int = 10
    median_len: float = 1024.0  # 回答长度（token）的中位数
    sigma: float = 1.0  # 对数正态分布的 σ，越大尾巴越长；0 表示所有回答一样长
    max_len: int = 16384  # 最大生成长度，更长的截断
    concurrency: int = 32  # 每个推理引擎同时解码的序列数（连续批处理的槽位）
    decode_step_s: float = 0.03  # 一个解码步的耗时
    train_s_per_token: float = 2.5e-4  # 单卡训练一个 token 的耗时（前向 + 反向 + 优化器）
    seed: int = 0

    def __post_init__(self):
        if self.num_gpus < 2 or not 1 <= self.rollout_gpus < self.num_gpus:
            raise ValueError("num_gpus 至少为 2，rollout_gpus 在 [1, num_gpus) 之间，两边都要有卡")
        if self.batch_size < self.num_gpus or self.iterations < 1 or self.concurrency < 1:
            raise ValueError("batch_size 不能少于卡数，iterations 和 concurrency 至少为 1")
        if self.median_len < 1 or self.sigma < 0 or self.max_len < self.median_len:
            raise ValueError("median_len ≥ 1，sigma ≥ 0，max_len 不能小于 median_len")
        if self.decode_step_s <= 0 or self.train_s_per_token <= 0:
            raise ValueError("decode_step_s 和 train_s_per_token 必须为正数")


# --8<-- [end:config]


# --8<-- [start:lengths]
def rollout_lengths(config: RlConfig) -> np.ndarray:
    """每轮每条回答的长度（token），形状 (iterations, batch_size)；对数正态，截断到 max_len。"""
    rng = np.random.default_rng(config.seed)
    size = (config.iterations, config.batch_size)
    raw = rng.lognormal(np.log(config.median_len), config.sigma, size)
    return np.clip(np.rint(raw), 1, config.max_len).astype(np.int64)


# --8<-- [end:lengths]


# --8<-- [start:engine]
def engine_makespan(lengths: np.ndarray, concurrency: int, step_s: float) -> float:
    """一个推理引擎写完手上这批回答要多久：哪个槽位先空出来，下一条就进哪个槽位。"""
    slots = [0.0] * concurrency  # 每个槽位空出来的时刻
    for length in lengths:
        heapq.heappush(slots, heapq.heappop(slots) + int(length) * step_s)
    return max(slots)


# --8<-- [end:engine]


# --8<-- [start:result]
@dataclass(frozen=True)
class RlResult:
    strategy: str
    policy_lag: int  # rollout 用的权重比正在训练的旧几步
    wall_s_per_iteration: float
    idle_fraction: float  # 卡上什么都没跑的 GPU·秒 / 总 GPU·秒
    underfilled_fraction: float  # 卡在解码但槽位空着（引擎内部的尾巴），折成 GPU·秒的占比
    samples_per_s: float


# --8<-- [end:result]


# --8<-- [start:simulate]
def simulate(strategy: str, config: RlConfig) -> RlResult:
    """逐轮推进每张卡的时间线，记下每张卡忙了多久，空闲比例由此算出。"""
    if strategy not in STRATEGIES:
        raise ValueError(f"未知的编排方式 {strategy!r}，可选：{', '.join(STRATEGIES)}")
    gpus = list(range(config.num_gpus))
    if strategy == "colocated":
        rollout, train, lag = gpus, gpus, 0
    else:
        split = config.rollout_gpus
        rollout, train, lag = gpus[:split], gpus[split:], int(strategy == "disagg-async")
    free = [0.0] * config.num_gpus  # 每张卡下一次空出来的时刻
    busy = [0.0] * config.num_gpus  # 每张卡累计忙碌的秒数
    underfilled, train_end = 0.0, []
    for k, batch in enumerate(rollout_lengths(config)):
        # 第 k 批要用第 k-1-lag 步训练产出的权重；lag=1 时 rollout 可以和上一步训练重叠
        weights_ready = train_end[k - 1 - lag] if k - 1 - lag >= 0 else 0.0
        rollout_done = 0.0
        for i, g in enumerate(rollout):
            shard = batch[i :: len(rollout)]  # 轮流分给各个引擎
            span = engine_makespan(shard, config.concurrency, config.decode_step_s)
            free[g] = max(free[g], weights_ready) + span
            busy[g] += span
            underfilled += span - int(shard.sum()) * config.decode_step_s / config.concurrency
            rollout_done = max(rollout_done, free[g])
        start = max([rollout_done] + [free[g] for g in train])  # 训练要等整批数据到齐
        train_s = int(batch.sum()) * config.train_s_per_token / len(train)
        for g in train:
            free[g] = start + train_s
            busy[g] += train_s
        train_end.append(start + train_s)
    wall = max(free)
    total = wall * config.num_gpus
    idle = sum(max(0.0, wall - b) for b in busy)  # max 只为吸收浮点误差
    return RlResult(
        strategy=strategy,
        policy_lag=lag,
        wall_s_per_iteration=wall / config.iterations,
        idle_fraction=idle / total,
        underfilled_fraction=underfilled / total,
        samples_per_s=config.iterations * config.batch_size / wall,
    )


# --8<-- [end:simulate]


# --8<-- [start:compare]
def compare(config: RlConfig) -> dict[str, RlResult]:
    """同一批回答长度（同一个种子）交给三种编排，结果可以逐项对比。"""
    return {strategy: simulate(strategy, config) for strategy in STRATEGIES}


# --8<-- [end:compare]


LABELS = {"colocated": "同置", "disagg-static": "分离·同步", "disagg-async": "分离·异步"}
HELP = {
    "num_gpus": "总卡数",
    "rollout_gpus": "分离部署时做 rollout 的卡数",
    "batch_size": "每轮生成的回答条数",
    "iterations": "模拟几轮",
    "median_len": "回答长度的中位数，token",
    "sigma": "长度对数正态分布的 σ，越大尾巴越长，0 为等长",
    "max_len": "最大生成长度，token",
    "concurrency": "每个推理引擎的并发槽位数",
    "decode_step_s": "一个解码步的耗时，秒",
    "train_s_per_token": "单卡训练一个 token 的耗时，秒",
    "seed": "随机种子",
}


def cmd_rl(args: argparse.Namespace) -> None:
    config = RlConfig(**{f.name: getattr(args, f.name) for f in fields(RlConfig)})
    c = config
    print(
        f"{c.num_gpus} 卡（分离时 {c.rollout_gpus} 卡 rollout），每轮 {c.batch_size} 条，"
        f"长度中位数 {c.median_len:g}、σ={c.sigma:g}，{c.iterations} 轮（建模，非实测）"
    )
    print("| 编排 | 策略滞后 | 每轮 (s) | GPU 空闲 | 槽位空着 | 吞吐 (条/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in compare(config).items():
        print(
            f"| {LABELS[name]} | {r.policy_lag} | {r.wall_s_per_iteration:.1f} | "
            f"{r.idle_fraction:.1%} | {r.underfilled_fraction:.1%} | {r.samples_per_s:.2f} |"
        )


def add_cli(subparsers) -> None:
    """注册 rl 子命令：三种编排的每轮耗时、空闲比例与吞吐。"""
    p = subparsers.add_parser("rl", help="RL 后训练：同置 vs 分离同步 vs 分离异步的 GPU 空闲")
    for f in fields(RlConfig):  # 每个配置字段一个同名参数，校验仍交给 RlConfig
        kind = count if isinstance(f.default, int) else positive
        kind = {"sigma": nonnegative, "seed": int}.get(f.name, kind)
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(
            flag, type=kind, default=f.default, help=f"{HELP[f.name]}（默认 {f.default:g}）"
        )
    p.set_defaults(fn=cmd_rl)
