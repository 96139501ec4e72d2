"""Agent 的代码沙箱：在子进程里运行一段 Python，限制 CPU、内存、墙钟、输出与文件，断网，用临时目录。

隔离分层，每层挡住不同的东西：

1. 内核资源限制（``setrlimit``）：CPU 秒数（超了收到 SIGXCPU）、地址空间（超了 ``MemoryError``）、
   单个文件大小（SIGXFSZ）、打开文件数、进程数（以 root 启动时先降到 nobody，进程数限制才生效）。
2. 新的网络命名空间（``unshare -rn``，系统允许非特权用户命名空间时）：
   子进程里只有一块没启用的回环网卡。
3. Python 审计钩子（PEP 578）：拒绝建 socket、fork/exec、打开工作目录以外的文件写入、读取解释器
   目录与工作目录以外的文件。它是护栏而不是边界，能加载本地代码的人绕得过去；生产里边界要交给
   gVisor、Firecracker 这类内核级隔离。
4. 父进程兜底：墙钟超时或输出超限时对整个进程组发 SIGKILL；临时目录用完即删。
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import cache

NOBODY = 65534
# 新的用户与网络命名空间。没有再加 PID 命名空间：unshare --fork 在子进程被信号杀死时
# 转发不了 SIGXCPU 这类退出原因；派生进程改由审计钩子与进程组 SIGKILL 管
UNSHARE = ("-rn",)


# --8<-- [start:limits]
MAX_LIMITS = {
    "cpu_seconds": 10,
    "wall_seconds": 30.0,
    "memory_mb": 1024,
    "output_bytes": 1024 * 1024,
    "file_bytes": 16 * 1024 * 1024,
    "max_processes": 64,
}


@dataclass(frozen=True)
class Limits:
    """一次运行的资源上限；``MAX_LIMITS`` 是服务端允许客户端要求的最大值。"""

    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    memory_mb: int = 256
    output_bytes: int = 64 * 1024
    file_bytes: int = 1024 * 1024
    max_processes: int = 16

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0 < value <= MAX_LIMITS[name]:
                raise ValueError(f"{name} 必须在 (0, {MAX_LIMITS[name]}] 之内，收到 {value}")


# --8<-- [end:limits]


@dataclass
class RunResult:
    status: str  # ok / error / timeout / cpu_limit / memory_limit / output_limit / file_limit
    exit_code: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    isolation: list[str] = field(default_factory=list)


# --8<-- [start:guard]
GUARD = r"""
import os, sys
ROOT = os.path.realpath(os.getcwd())
PREFIXES = (sys.prefix, sys.base_prefix, sys.exec_prefix)
READABLE = tuple({os.path.realpath(p) + os.sep for p in PREFIXES}
                 | {os.path.realpath(p) + os.sep for p in sys.path if p and os.path.isdir(p)})
BLOCKED = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "os.fork",
           "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
           "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "os.chroot"}
PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
               "os.chmod", "os.chown", "os.truncate", "os.utime", "os.listdir", "os.scandir"}
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def inside(path):
    p = os.path.realpath(os.fsdecode(path))
    return p == ROOT or p.startswith(ROOT + os.sep), p

def guard(event, args):
    if event == "import" and args[0] in ("_posixsubprocess", "_ctypes"):
        raise PermissionError(f"sandbox: import {args[0]} is not allowed")  # 它们不触发审计事件
    if event in BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and not isinstance(args[0], int):
        ok, p = inside(args[0])
        writing = any(c in (args[1] or "") for c in "wax+") or (args[2] or 0) & WRITE
        if not ok and (writing or not p.startswith(READABLE)):
            raise PermissionError(f"sandbox: access to {p} is not allowed")
    elif event in PATH_EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
        ok, p = inside(args[0])
        if not ok and not (event in ("os.listdir", "os.scandir") and p.startswith(READABLE)):
            raise PermissionError(f"sandbox: {event} on {p} is not allowed")

source = open("main.py", encoding="utf-8").read()
sys.addaudithook(guard)
del guard
exec(compile(source, "main.py", "exec"), {"__name__": "__main__"})
"""
# --8<-- [end:guard]


def _works(cmd: list[str], drop: bool) -> bool:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            timeout=10,
            cwd="/",
            preexec_fn=lambda: _child_setup(Limits(), drop),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@cache
def isolation_mode() -> tuple[bool, bool]:
    """(降到 nobody, 新网络命名空间) 在这台机器上各能不能用，各试跑一次 Python 来判断。

    以 root 启动时降到 nobody：root 不受进程数限制，也能读写任何文件。但解释器若装在 nobody
    进不去的目录（例如 /root 下），降权后连 Python 都起不来，只好不降。``unshare -rn`` 需要内核
    允许非特权用户命名空间。
    """
    python = [sys.executable, "-I", "-c", "pass"]
    drop = os.geteuid() == 0 and _works(python, True)
    unshare = shutil.which("unshare")
    netns = unshare is not None and _works([unshare, *UNSHARE, *python], drop)
    return drop, netns


def isolation_layers() -> list[str]:
    drop, netns = isolation_mode()
    return ["rlimits", "audit-hook", "tmpdir"] + ["nobody"] * drop + ["netns"] * netns


# --8<-- [start:rlimits]
def _child_setup(limits: Limits, drop: bool) -> None:
    """在子进程 exec 之前执行：先降权，再设内核资源上限。"""
    if drop:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        # 进程数按真实用户计；nobody 名下平时没有进程，普通用户名下的进程太多，不宜设
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes,) * 2)
    mem = limits.memory_mb * 2**20
    cpu = (limits.cpu_seconds, limits.cpu_seconds + 1)  # 到软限制收到 SIGXCPU，硬限制是 SIGKILL
    for res, value in (
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_AS, (mem, mem)),  # 地址空间：分配失败即 MemoryError
        (resource.RLIMIT_FSIZE, (limits.file_bytes,) * 2),  # 写超了收到 SIGXFSZ
        (resource.RLIMIT_NOFILE, (64, 64)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)
    # --8<-- [end:rlimits]


def _read(pipe, sink: bytearray, cap: int, over: threading.Event) -> None:
    while chunk := pipe.read1(65536):
        room = cap - len(sink)
        sink += chunk[: max(room, 0)]
        if len(chunk) > room:
            over.set()
            break


# --8<-- [start:run]
def run_code(code: str, limits: Limits | None = None) -> RunResult:
    """在全新的临时目录里运行 ``code``，返回状态、退出码、截断后的输出与用时。"""
    limits = limits or Limits()
    drop, netns = isolation_mode()
    cmd = [sys.executable, "-I", "-c", GUARD]
    if netns:
        cmd = [shutil.which("unshare") or "unshare", *UNSHARE, *cmd]
    with tempfile.TemporaryDirectory(prefix="sandbox-") as work:
        with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        if drop:
            os.chown(work, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(limits, drop),
        )
        out, err, over = bytearray(), bytearray(), threading.Event()
        readers = [
            threading.Thread(target=_read, args=(p, s, limits.output_bytes, over))
            for p, s in ((proc.stdout, out), (proc.stderr, err))
        ]
        for t in readers:
            t.start()
        timed_out = False
        while proc.poll() is None and not over.is_set():
            if time.monotonic() - start > limits.wall_seconds:
                timed_out = True
                break
            time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # 整个进程组，连同它可能派生的子进程
        proc.wait()
        for t in readers:
            t.join(timeout=2)  # 万一有漏网的后代进程还握着管道，也不无限等
        wall = time.monotonic() - start
    status = classify(proc.returncode, bytes(err), timed_out, over.is_set())
    text = bytes(out).decode("utf-8", "replace"), bytes(err).decode("utf-8", "replace")
    return RunResult(status, proc.returncode, *text, round(wall, 3), isolation_layers())
    # --8<-- [end:run]


def classify(code: int | None, stderr: bytes, timed_out: bool, output_over: bool) -> str:
    """把退出方式翻译成状态：被信号杀死时 returncode 是负的信号号。"""
    if output_over:
        return "output_limit"
    if timed_out:
        return "timeout"
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return "cpu_limit"
    if code == -signal.SIGXFSZ or b"File too large" in stderr:
        return "file_limit"  # CPython 忽略 SIGXFSZ，写超限变成 OSError(EFBIG)
    if b"MemoryError" in stderr:
        return "memory_limit"
    return "ok" if code == 0 else "error"
