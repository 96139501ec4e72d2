"""OpenAI 兼容的请求与响应：用 pydantic 严格校验输入，错误一律按 OpenAI 的 JSON 格式返回。

字段名与语义对照 OpenAI API 参考（Completions、Chat Completions）和 vLLM 0.33.0 的
``vllm/entrypoints/openai/protocol.py``；``ignore_eos`` 是 vLLM 的扩展参数，压测时用它让每个请求
都生成满 ``max_tokens``。不支持的参数明确拒绝（400），而不是悄悄忽略——忽略 ``stop`` 或 ``n``
会让调用方拿到与预期不同、又看不出错的结果。
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError


class ApiError(Exception):
    """变成 HTTP 4xx/5xx 响应的错误；message 给调用方看，绝不带调用栈。"""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", **kw):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_
        self.param, self.code, self.headers = kw.get("param"), kw.get("code"), kw.get("headers")

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


# --8<-- [start:requests]
class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")  # 拼错或不支持的参数 → 400，而不是被忽略

    model: StrictStr | None = None
    temperature: float = Field(1.0, ge=0, le=2)  # OpenAI 的默认值是 1；0 即贪心
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    ignore_eos: StrictBool = False  # vLLM 扩展
    user: StrictStr | None = None  # OpenAI 用于追踪滥用的标识，只记录不使用
    n: Literal[1] = 1  # 只支持一个候选


class CompletionRequest(_Common):
    prompt: StrictStr = Field(min_length=1)
    max_tokens: StrictInt = Field(16, ge=1)  # OpenAI Completions 的默认值是 16


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)  # 新版 OpenAI 的名字

    def limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


def chat_prompt(messages: list[Message]) -> str:
    """本书的小模型没有对话模板，按“角色: 内容”逐行拼起来，最后留给 assistant 接着写。"""
    return "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant: "
    # --8<-- [end:requests]


def parse(model: type[BaseModel], payload: object) -> BaseModel:
    """校验失败时给出第一处错误的位置和原因。

    例如 ``max_tokens: Input should be a valid integer``。"""
    if not isinstance(payload, dict):
        raise ApiError(400, "请求体必须是 JSON 对象")
    try:
        return model.model_validate(payload)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ApiError(400, f"{where}: {err['msg']}", param=where) from None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response_body(
    rid: str, model: str, text: str, finish: str | None, chat: bool, stream: bool = False
) -> dict:
    """补全（text_completion）或对话（chat.completion）的响应；stream 为真时是 SSE 的一个增量。"""
    if not chat:
        choice = {"index": 0, "text": text, "logprobs": None}
    elif stream:
        choice = {"index": 0, "delta": {"role": "assistant", "content": text} if text else {}}
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    kind = ("chat.completion.chunk" if stream else "chat.completion") if chat else "text_completion"
    return {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice | {"finish_reason": finish}],
    }
