"""把沙箱包成 HTTP 服务：像推理引擎一样给一个 URL，发一个请求就把代码跑完拿回结果。

``POST /v1/run`` 收 ``{"code": "...", "limits": {...}}``，在沙箱里运行，
返回状态、退出码、输出与用时；
``GET /health`` 报告本机实际启用了哪几层隔离。同时运行的沙箱数有上限（默认等于 CPU 核数），
再有等待中的请求超过上限就回 429，不让请求在服务里无限排队。
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .sandbox import MAX_LIMITS, Limits, isolation_layers, run_code

MAX_CODE_CHARS = 64 * 1024


# --8<-- [start:schema]
class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu_seconds: int = Field(2, gt=0, le=MAX_LIMITS["cpu_seconds"])
    wall_seconds: float = Field(5.0, gt=0, le=MAX_LIMITS["wall_seconds"])
    memory_mb: int = Field(256, gt=0, le=MAX_LIMITS["memory_mb"])
    output_bytes: int = Field(64 * 1024, gt=0, le=MAX_LIMITS["output_bytes"])
    file_bytes: int = Field(1024 * 1024, gt=0, le=MAX_LIMITS["file_bytes"])
    max_processes: int = Field(16, gt=0, le=MAX_LIMITS["max_processes"])


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=MAX_CODE_CHARS)
    limits: LimitsIn = LimitsIn()
    # --8<-- [end:schema]


# --8<-- [start:app]
def create_app(max_concurrent: int | None = None, max_waiting: int = 16) -> FastAPI:
    app = FastAPI(title="ch10 sandbox", docs_url=None, redoc_url=None)
    running = max_concurrent or os.cpu_count() or 1
    slots, state = asyncio.Semaphore(running), {"in_flight": 0}  # 在跑的 + 排队的

    @app.get("/health")
    async def health():
        return {"status": "ok", "isolation": isolation_layers()}

    @app.post("/v1/run")
    async def run(req: RunRequest):
        if state["in_flight"] >= running + max_waiting:
            return JSONResponse({"error": "too many queued runs"}, 429, {"Retry-After": "1"})
        state["in_flight"] += 1
        try:
            async with slots:
                limits = Limits(**req.limits.model_dump())
                result = await asyncio.to_thread(run_code, req.code, limits)
        finally:
            state["in_flight"] -= 1
        return asdict(result)

    return app
    # --8<-- [end:app]
