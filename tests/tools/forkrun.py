"""快速地反复运行 ``python -m 模块 参数...``：预先导入了 PyTorch 的服务进程为每条命令 fork 子进程。

书中有一百多段命令输出要逐字核对，每段都新起一个 Python 并导入 torch 要 1.5 s 左右，
光启动就占去几分钟。服务进程只 *导入* torch 与 NumPy、不做任何运算（还没有启动 OpenMP 线程池），
fork 出的子进程像新进程一样从头运行命令；每条命令有自己的进程，互不影响。

子进程里的行为与 ``python -m`` 相同（``runpy.run_module``，以 ``__main__`` 运行、改写 sys.argv），
``run_code`` 则与 ``python -c`` 相同；标准输出与标准错误分别写进临时文件，
超时（默认 300 s）由 ``signal.alarm`` 结束。
只在有 ``os.fork`` 的系统上用；别处退回到普通的 subprocess。
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVER = r"""
import json, os, runpy, signal, sys, tempfile, traceback
import numpy, torch  # 只导入，不运算

for line in sys.stdin:
    req = json.loads(line)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        signal.alarm(req["timeout"])
        code = 0
        try:
            if "module" in req:
                sys.argv = [req["module"], *req["args"]]
                runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            else:
                os.chdir(req["cwd"])
                sys.argv = ["-c"]
                exec(compile(req["code"], "<string>", "exec"), {"__name__": "__main__"})
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    reply = {
        "stdout": out.read().decode("utf-8", "replace"),
        "stderr": err.read().decode("utf-8", "replace"),
        "returncode": os.waitstatus_to_exitcode(status),
    }
    out.close()
    err.close()
    sys.__stdout__.write(json.dumps(reply) + "\n")
    sys.__stdout__.flush()
"""

_lock = threading.Lock()
_server: subprocess.Popen | None = None


def _get_server() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
    return _server


def _request(request: dict) -> tuple[str, str, int]:
    with _lock:
        server = _get_server()
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        reply = json.loads(server.stdout.readline())
    return reply["stdout"], reply["stderr"], reply["returncode"]


def _subprocess(argv: list[str], cwd: Path, timeout: int) -> tuple[str, str, int]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc.stdout, proc.stderr, proc.returncode


def run_module(module: str, args: list[str], timeout: int = 300) -> tuple[str, str, int]:
    """像 ``python -m module *args`` 一样运行（cwd 是仓库根），返回 (stdout, stderr, 退出码)。"""
    if not hasattr(os, "fork"):
        return _subprocess([sys.executable, "-m", module, *args], ROOT, timeout)
    return _request({"module": module, "args": args, "timeout": timeout})


def run_code(code: str, cwd: Path, timeout: int = 300) -> tuple[str, str, int]:
    """像 ``python -c code`` 一样在 cwd 里运行，返回 (stdout, stderr, 退出码)。"""
    if not hasattr(os, "fork"):
        return _subprocess([sys.executable, "-c", code], cwd, timeout)
    return _request({"code": code, "cwd": str(cwd), "timeout": timeout})
