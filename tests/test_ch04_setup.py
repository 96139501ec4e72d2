"""第 4 章代码：体检退出码、报错库、transformers 推理、vLLM 缺失时的提示、Docker 参数。"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest
import yaml
from ch04_setup import doctor
from ch04_setup.cli import explain, known_errors, main
from ch04_setup.serve_flags import REMOVED_FLAGS, SERVE_FLAGS, VLLM_VERSION
from conftest import DOCS, ROOT, assert_clean_cli_error

DOCKER = ROOT / "code" / "ch04_setup" / "docker"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ch04_setup", *argv], capture_output=True, text=True, timeout=120
    )


# ---- doctor ----
def test_exit_codes_distinguish_ready_cpu_only_and_blocked():
    ok = [doctor.Check(n, doctor.OK, "") for n in ("Python", "CUDA", "驱动", "vLLM", "端口")]
    assert doctor.exit_code(ok) == 0
    cpu_only = [*ok[:1], doctor.Check("CUDA", doctor.WARN, ""), *ok[2:]]
    assert doctor.exit_code(cpu_only) == 1
    assert doctor.exit_code([*ok, doctor.Check("端口", doctor.FAIL, "")]) == 3


def test_port_check_detects_a_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = doctor.check_port("127.0.0.1", port)
    assert busy.status == doctor.FAIL and "ss -ltnp" in busy.fix
    assert doctor.check_port("127.0.0.1", port).status == doctor.OK


def test_doctor_on_this_cpu_machine_reports_cpu_only_as_json(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    proc = run(
        "doctor", "--json", "--port", port, "--disk-path", str(tmp_path), "--min-disk-gb", "1"
    )
    data = json.loads(proc.stdout)
    assert proc.returncode == data["exit_code"] == 1  # 测试机没有 GPU
    names = [c["name"] for c in data["checks"]]
    assert names[:4] == ["Python", "PyTorch", "CUDA", "驱动"] and "vLLM" in names
    assert run("doctor", "--disk-path", str(tmp_path), "--min-disk-gb", "1e9").returncode == 3


# ---- explain ----
def test_every_known_error_example_is_recognised_by_its_own_entry():
    for entry in known_errors():
        assert [e["id"] for e in explain(entry["example"])] == [entry["id"]]
        assert entry["source"] and entry["cause"] and entry["fix"]


def test_explain_cli_reads_stdin_and_says_when_nothing_matches():
    proc = subprocess.run(
        [sys.executable, "-m", "ch04_setup", "explain", "-"],
        input="...\nOSError: [Errno 98] Address already in use\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "address-in-use" in proc.stdout
    assert run("explain", "everything is fine").returncode == 1


# ---- transformers 推理 ----
@pytest.fixture(scope="module")
def hf_default():
    from ch04_setup.infer import load

    return load()


def test_transformers_and_tinyllm_give_the_same_greedy_text(hf_default):
    from ch04_setup.infer import generate_one
    from tinyllm import ByteTokenizer, generate, load_default

    model, tok = hf_default
    prompt = "显存带宽"
    ours = ByteTokenizer().decode(generate(load_default(), ByteTokenizer().encode(prompt), 40))
    assert generate_one(model, tok, prompt, 40) == ours


def test_batched_and_streamed_outputs_equal_single_requests(hf_default):
    from ch04_setup.infer import generate_batch, generate_one, stream

    model, tok = hf_default
    prompts = ["KV Cache", "推理优化的第一步是", "GPU"]  # 长度不同：左填充
    singles = [generate_one(model, tok, p, 24) for p in prompts]
    assert generate_batch(model, tok, prompts, 24) == singles
    assert "".join(stream(model, tok, prompts[1], 24)) == singles[1]


def test_bench_reports_positive_latencies(hf_default):
    from ch04_setup.infer import batch_throughput, bench

    model, tok = hf_default
    r = bench(model, tok, "显存", max_new_tokens=8, runs=1)
    assert r.ttft_ms > 0 and r.tpot_ms > 0 and r.tokens_per_s > 0 and r.new_tokens == 8
    assert batch_throughput(model, tok, "显存", batch=2, max_new_tokens=4) > 0


def test_generate_cli_and_bad_model_path(capsys):
    proc = run("generate", "--prompt", "显存", "--max-new-tokens", "8")
    assert proc.returncode == 0 and proc.stdout.startswith("[显存] → ")
    assert_clean_cli_error(main, ["generate", "--max-new-tokens", "0"], capsys)
    assert_clean_cli_error(main, ["generate", "--model", "/nonexistent/model"], capsys)


# ---- vLLM：没有 GPU / 没有 vllm / 没有服务时一行说明 ----
@pytest.mark.parametrize(
    "argv", [["vllm-offline"], ["vllm-chat", "--base-url", "http://127.0.0.1:9/v1"]]
)
def test_vllm_paths_exit_with_one_clear_line(argv):
    proc = run(*argv)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ---- Docker 与 vllm serve 参数 ----
def serve_args_in_dockerfile(path) -> list[str]:
    cmd = [line for line in path.read_text("utf-8").splitlines() if line.startswith("CMD [")]
    return json.loads(cmd[-1][4:])


def test_compose_requests_gpus_shares_memory_and_checks_health():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text("utf-8"))
    svc = compose["services"]["vllm"]
    device = svc["deploy"]["resources"]["reservations"]["devices"][0]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert svc["ipc"] == "host"
    assert "/health" in " ".join(svc["healthcheck"]["test"])
    assert "VLLM_API_KEY" in svc["environment"]


def test_every_serve_flag_in_docker_files_and_pages_was_verified():
    used = []
    used += yaml.safe_load((DOCKER / "compose.yaml").read_text("utf-8"))["services"]["vllm"][
        "command"
    ]
    for name in ("Dockerfile", "Dockerfile.baked"):
        used += serve_args_in_dockerfile(DOCKER / name)
        text = (DOCKER / name).read_text("utf-8")
        assert f"vllm/vllm-openai:v{VLLM_VERSION}" in text
    for page in sorted((DOCS / "ch04-setup").glob("*.md")):
        # 把续行拼起来，取每条 vllm serve 命令里的参数
        text = page.read_text("utf-8").replace("\\\n", " ")
        for line in re.findall(r"vllm serve [^\n`]*", text):
            used += line.split()
    flags = {a.split("=")[0] for a in used if a.startswith("--")}
    unknown = flags - set(SERVE_FLAGS) - {"--help"}
    assert not unknown, f"未核对的 vllm serve 参数：{unknown}"


def test_removed_flags_only_appear_as_warnings():
    for page in sorted((DOCS / "ch04-setup").glob("*.md")):
        for line in page.read_text("utf-8").splitlines():
            if any(flag in line for flag in REMOVED_FLAGS):
                assert "移除" in line or "不存在" in line or "unrecognized" in line, line
