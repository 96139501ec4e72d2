"""第 10.1 节的沙箱：死循环、fork 炸弹、内存炸弹、逃出文件系统、联网、刷屏，每一种都被挡住；
HTTP 服务照样工作，坏请求得到 4xx。"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from ch10_advanced.agent_server import create_app
from ch10_advanced.sandbox import Limits, isolation_layers, run_code
from fastapi.testclient import TestClient
from test_ch09_serving import arun

FAST = Limits(cpu_seconds=1, wall_seconds=10.0, memory_mb=256)  # 墙钟放宽：机器忙时 1 CPU 秒要更久


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture
def no_leftover_children():
    """沙箱运行前后，本进程的子进程集合不变（同一进程里别的测试起的浏览器、服务不算）。"""
    before = children()
    yield
    assert children() <= before


def test_plain_code_runs_and_its_work_dir_is_removed():
    r = run_code("import os, json\nopen('a.txt', 'w').write('hi')\n"
                 "print(json.dumps([open('a.txt').read(), os.getcwd()]))", FAST)  # fmt: skip
    assert (r.status, r.exit_code) == ("ok", 0), r.stderr
    text, cwd = eval(r.stdout)  # noqa: S307 - 输出是上面那段代码写的 JSON 列表
    assert text == "hi" and not Path(cwd).exists()
    assert {"rlimits", "audit-hook", "tmpdir"} <= set(r.isolation)


def test_infinite_loop_is_stopped_by_the_cpu_limit(no_leftover_children):
    start = time.monotonic()
    r = run_code("while True:\n    pass", FAST)
    assert r.status == "cpu_limit" and time.monotonic() - start < 10


def test_sleeping_past_the_wall_clock_is_killed(no_leftover_children):
    r = run_code("import time\ntime.sleep(60)", Limits(wall_seconds=1.0))
    assert r.status == "timeout" and 1.0 <= r.wall_seconds < 2.5


@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nwhile True:\n    subprocess.Popen(['python3', '-c', 'pass'])",
        "import os\nos.posix_spawn('/bin/sh', ['sh', '-c', ':(){ :|:& };:'], {})",
        "import multiprocessing as mp\nmp.Process(target=print).start()",
        "import os\nos.system('sh -c \"while true; do sleep 1 & done\"')",
        "import _posixsubprocess",  # fork_exec 不触发审计事件，所以整个模块都不让导入
        "import ctypes\nctypes.CDLL(None).fork()",
    ],
    ids=["fork", "popen", "posix_spawn", "multiprocessing", "system", "posixsubprocess", "ctypes"],
)
def test_fork_bombs_cannot_spawn_processes(code, no_leftover_children):
    before = len(psutil.pids())
    r = run_code(code, FAST)
    assert r.status == "error" and "PermissionError: sandbox" in r.stderr, r.stderr
    assert len(psutil.pids()) < before + 10  # 机器上的进程数没有暴涨


@pytest.mark.parametrize(
    "code",
    [
        "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))",
        "x = bytearray(2**31)",
        "x = ' ' * (2**30)",
    ],  # fmt: skip
    ids=["grow", "one-big", "string"],
)
def test_memory_hog_hits_the_address_space_limit(code):
    r = run_code(code, FAST)
    assert r.status == "memory_limit" and "MemoryError" in r.stderr


def test_file_system_escapes_are_denied(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-value")
    target = tmp_path / "victim.txt"
    target.write_text("untouched")
    attempts = [
        f"print(open({str(secret)!r}).read())",
        f"open({str(target)!r}, 'w').write('pwned')",
        "open('../../../../../../../escape.txt', 'w').write('x')",
        "import os\nos.symlink('/etc', 'etc')\nprint(open('etc/hostname').read())",
        f"import os\nos.remove({str(target)!r})",
        "import os\nprint(os.listdir('/'))",
        f"import os\nos.chdir('/')\nprint(open({str(secret)!r}).read())",
        "import shutil\nshutil.copy('/etc/hostname', 'h')",
    ]
    for code in attempts:
        r = run_code(code, FAST)
        assert r.status == "error" and "PermissionError: sandbox" in r.stderr, (code, r.stderr)
        assert "top-secret-value" not in r.stdout
    assert target.read_text() == "untouched"
    assert not Path("/escape.txt").exists()


def test_network_is_unreachable():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        for code in (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
            "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)",
            "import socket\nsocket.socket().bind(('0.0.0.0', 0))",
        ):
            r = run_code(code, FAST)
            assert r.status == "error" and "PermissionError: sandbox" in r.stderr, r.stderr
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # 没有任何连接到达
    finally:
        server.close()


def test_output_and_file_size_are_capped():
    r = run_code("while True:\n    print('x' * 1000)", Limits(output_bytes=4096))
    assert r.status == "output_limit" and len(r.stdout.encode()) <= 4096
    r = run_code("open('big', 'wb').write(b'x' * 8 * 2**20)", Limits(file_bytes=2**20))
    assert r.status == "file_limit"


def test_limits_are_validated():
    for bad in ({"cpu_seconds": 0}, {"memory_mb": -1}, {"wall_seconds": 1000}):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_http_service_runs_code_and_rejects_bad_requests():
    with TestClient(create_app(max_concurrent=2)) as client:
        assert client.get("/health").json() == {"status": "ok", "isolation": isolation_layers()}
        ok = client.post("/v1/run", json={"code": "print(6 * 7)"}).json()
        assert (ok["status"], ok["stdout"]) == ("ok", "42\n")
        loop = client.post("/v1/run", json={"code": "while 1: pass", "limits": {"cpu_seconds": 1}})
        assert loop.json()["status"] == "cpu_limit"
        for body in (
            {},
            {"code": ""},
            {"code": "print(1)", "shell": True},
            {"code": "print(1)", "limits": {"memory_mb": 10**6}},
            {"code": "print(1)", "limits": {"cpu_seconds": "lots"}},
            {"code": "x" * (64 * 1024 + 1)},
        ):
            assert client.post("/v1/run", json=body).status_code == 422, body


def test_http_service_sheds_load_with_429():
    app = create_app(max_concurrent=1, max_waiting=0)

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            slow = {"code": "import time\ntime.sleep(1)"}
            return await asyncio.gather(*(c.post("/v1/run", json=slow) for _ in range(3)))

    codes = sorted(r.status_code for r in arun(burst()))
    assert codes == [200, 429, 429]


def test_real_http_process_serves_concurrent_runs():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code_dir = str(Path(__file__).resolve().parents[1] / "code")
    env = {**os.environ, "PYTHONPATH": code_dir}
    cmd = [sys.executable, "-m", "ch10_advanced", "serve-sandbox", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        async def both():
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                return await asyncio.gather(
                    c.post(
                        "/v1/run", json={"code": "while True: pass", "limits": {"cpu_seconds": 1}}
                    ),  # fmt: skip
                    c.post("/v1/run", json={"code": "print('hello')"}),
                )

        loop, hello = (r.json() for r in arun(both()))
        assert loop["status"] == "cpu_limit"
        assert (hello["status"], hello["stdout"]) == ("ok", "hello\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
