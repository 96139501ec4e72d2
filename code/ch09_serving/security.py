"""API 密钥认证与按密钥限流（9.8 节）。

认证：``Authorization: Bearer <key>``，与 OpenAI 和 vLLM（``--api-key``）的约定相同；比较用
``hmac.compare_digest``，耗时与前缀匹配多少无关，不给逐字符猜密钥留计时侧信道。
限流：每个密钥一个令牌桶（token bucket）。桶容量 ``burst`` 允许短时突发，之后按 ``rate`` 个/秒
补充；桶空时回 429，并在 ``Retry-After`` 里告诉客户端等多久。vLLM 自身不限流，生产上通常放在
网关（Envoy、Kong、LiteLLM 等）里做；这里放进服务，便于读懂与测试。
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import ApiError


# --8<-- [start:auth]
def authenticate(header: str | None, keys: tuple[str, ...]) -> str:
    """返回调用方的身份（密钥本身，只在进程内用作限流的键）；没配密钥时按匿名放行。"""
    if not keys:
        return "anonymous"
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "缺少 API 密钥：请加请求头 Authorization: Bearer <key>",
            "authentication_error",
            code="missing_api_key",
        )
    for key in keys:  # 逐个比较完，不提前返回，避免泄露“第几个密钥匹配”
        if hmac.compare_digest(token.encode(), key.encode()):
            return key
    raise ApiError(401, "API 密钥无效", "authentication_error", code="invalid_api_key")
    # --8<-- [end:auth]


# --8<-- [start:rate-limit]
@dataclass
class TokenBucket:
    rate: float  # 每秒补充几个
    burst: int  # 桶容量
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """取一个令牌：成功返回 0，否则返回还要等几秒。"""
        if self.tokens < 0:  # 新桶是满的
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("限流的 rate 须 > 0，burst 须 ≥ 1")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, who: str) -> None:
        bucket = self.buckets.setdefault(who, TokenBucket(self.rate, self.burst))
        wait = bucket.take(self.clock())
        if wait > 0:
            raise ApiError(
                429,
                f"请求过于频繁：每密钥每秒 {self.rate:g} 个、突发 {self.burst} 个",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    # --8<-- [end:rate-limit]
