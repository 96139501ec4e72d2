"""第 9 章部署清单：Kubernetes 资源的结构与相互引用，vLLM 参数与指标名对照 vLLM 0.33.0。

vLLM 一侧的事实（指标名、类型、`vllm serve` 接受的参数）记在 tests/data/vllm-0.33.0-metrics.yml，
每项注明 wheel 内的文件与行号；这里只拿清单去和它比对，不需要安装 vLLM。
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DEPLOY = ROOT / "code" / "ch09_serving" / "deploy"
SERVING = ROOT / "code" / "ch09_serving"
DATA = yaml.safe_load((ROOT / "tests" / "data" / "vllm-0.33.0-metrics.yml").read_text("utf-8"))
METRICS: dict[str, dict] = DATA["metrics"]
SERVE_FLAGS: dict[str, str] = DATA["serve_flags"]
ALL_SERVE_FLAGS = set(DATA["all_serve_flags"])

API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "Secret": "v1",
    "ConfigMap": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}
# 演示服务的 serve 子命令参数：优先从 ch09_serving.cli 的解析器里取，取不到时用这份约定
DEMO_SERVE_FLAGS = {"--host", "--port", "--api-key", "--drain-timeout"}
# 演示服务承诺导出的 vLLM 同名指标（deploy/README.md 里列出的那些），按暴露名写
DEMO_METRICS = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:prompt_tokens_total": "counter",
    "vllm:generation_tokens_total": "counter",
    "vllm:request_success_total": "counter",
    "vllm:num_preemptions_total": "counter",
    "vllm:admission_rejections_total": "counter",
    "book_http_responses_total": "counter",
}
METRIC_TOKEN = re.compile(r"\b((?:vllm:|book_)[a-zA-Z0-9_:]+)")


def load_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text("utf-8")):
            if doc is not None:
                docs.append((path, doc))
    return docs


DOCS = load_docs()


def of_kind(kind: str, subdir: str | None = None) -> list[tuple[Path, dict]]:
    return [
        (p, d)
        for p, d in DOCS
        if d.get("kind") == kind and (subdir is None or p.parent.name == subdir)
    ]


def one(kind: str, subdir: str) -> dict:
    found = of_kind(kind, subdir)
    assert len(found) == 1, f"deploy/{subdir} 里应有且只有一个 {kind}，实际 {len(found)} 个"
    return found[0][1]


def ids(items: list[tuple[Path, dict]]) -> list[str]:
    return [f"{p.parent.name}/{p.name}:{d['metadata']['name']}" for p, d in items]


def container(dep: dict) -> dict:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def argv(dep: dict) -> list[str]:
    c = container(dep)
    return [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]


def flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def long_flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def metric_known(token: str, metrics: dict[str, dict]) -> bool:
    """直方图在 PromQL 里以 _bucket / _sum / _count 出现，基名才在指标表里。"""
    if token in metrics:
        return True
    base, _, suffix = token.rpartition("_")
    return suffix in ("bucket", "sum", "count") and metrics.get(base, {}).get("type") == "histogram"


def demo_exported() -> dict[str, tuple[str, set[str] | None]]:
    """演示服务实际导出的指标：暴露名 → (类型, 标签名)。没有样本的指标标签名记为 None。"""
    try:
        from ch09_serving.metrics import ServerMetrics
    except ImportError:
        return {name: (kind, None) for name, kind in DEMO_METRICS.items()}
    out = {}
    for family in ServerMetrics("x").registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {
            k
            for s in family.samples
            if not s.name.endswith("_created")
            for k in s.labels
            if k != "le"
        }
        out[name] = (family.type, labels or None)
    return out


def demo_serve_flags() -> set[str]:
    try:
        from ch09_serving.cli import build_parser
    except ImportError:
        return DEMO_SERVE_FLAGS
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    return {s for s in sub.choices["serve"]._option_string_actions if s.startswith("--")}


def prestop_sleep(c: dict) -> int:
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return int(cmd[1]) if cmd[:1] == ["sleep"] else 0


# ---- 通用结构 ----
def test_every_document_is_a_known_resource_or_the_rule_file():
    assert DOCS, "deploy/ 下没有 YAML"
    for path, doc in DOCS:
        if "groups" in doc:  # Prometheus 规则文件，不是 Kubernetes 资源
            assert path == DEPLOY / "monitoring" / "alerts.yaml"
            continue
        kind = doc.get("kind")
        assert kind in API_VERSIONS, f"{path.name}: 未知的 kind {kind!r}"
        assert doc["apiVersion"] == API_VERSIONS[kind], f"{path.name}: {kind}"
        if kind != "Kustomization":
            assert doc["metadata"]["name"], path.name


@pytest.mark.parametrize("subdir", ["vllm", "demo"])
def test_kustomization_lists_real_files_and_skips_the_example_secret(subdir):
    kust = one("Kustomization", subdir)
    listed = kust["resources"]
    for name in listed:
        assert (DEPLOY / subdir / name).is_file(), name
    assert not any("example" in name for name in listed)
    kinds = {d["kind"] for p, d in DOCS if p.parent.name == subdir and p.name in listed}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds


def test_example_secrets_hold_only_placeholders():
    secrets = of_kind("Secret")
    assert secrets
    for path, doc in secrets:
        assert path.name == "secret.example.yaml"
        for value in doc["stringData"].values():
            assert value == "change-me"


# ---- Deployment ----
@pytest.mark.parametrize("item", of_kind("Deployment"), ids=ids(of_kind("Deployment")))
def test_deployment_shape(item):
    path, dep = item
    spec, pod = dep["spec"], dep["spec"]["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    c = container(dep)
    image = c["image"]
    assert ":" in image and not image.endswith(":latest"), image
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"].startswith("/"), probe
        assert get["port"] in ports or get["port"] in ports.values(), probe
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    for kind in ("requests", "limits"):
        assert "memory" in c["resources"][kind]


@pytest.mark.parametrize(
    ("subdir", "flag"), [("vllm", "--shutdown-timeout"), ("demo", "--drain-timeout")]
)
def test_grace_period_covers_prestop_and_drain(subdir, flag):
    dep = one("Deployment", subdir)
    drain = flag_value(argv(dep), flag)
    assert drain is not None, f"{subdir} 没有设 {flag}"
    sleep = prestop_sleep(container(dep))
    assert sleep > 0, "应有 preStop sleep，等 Service 端点摘除生效"
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > sleep + float(drain), (grace, sleep, drain)


def test_vllm_deployment_uses_only_real_serve_flags():
    args = argv(one("Deployment", "vllm"))
    assert args[:2] == ["vllm", "serve"]
    assert not args[2].startswith("-"), "vllm serve 之后第一个参数应是模型名"
    flags = long_flags(args)
    assert len(flags) == len(set(flags)), "参数重复"
    for flag in flags:
        assert flag in SERVE_FLAGS, f"{flag} 没有在 tests/data/vllm-0.33.0-metrics.yml 里登记出处"
    for flag, ref in SERVE_FLAGS.items():
        assert flag in ALL_SERVE_FLAGS, f"{flag} 不是 vLLM 0.33.0 的 serve 参数"
        assert re.fullmatch(r"vllm/[\w/]+\.py:\d+", ref), ref
    # 0.33.0 已移除、旧教程常见的参数
    assert "--swap-space" not in ALL_SERVE_FLAGS
    assert "--use-v2-block-manager" not in ALL_SERVE_FLAGS


def test_vllm_deployment_gpu_and_runtime_settings():
    dep = one("Deployment", "vllm")
    pod, c, args = dep["spec"]["template"]["spec"], container(dep), argv(dep)
    assert c["image"] == "vllm/vllm-openai:v0.33.0"
    gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
    tp = int(flag_value(args, "--tensor-parallel-size") or 1)
    pp = int(flag_value(args, "--pipeline-parallel-size") or 1)
    assert gpus == tp * pp
    assert pod["nodeSelector"] and pod["tolerations"]
    # 模型标签、指标的 model_name（= --served-model-name）保持一致
    assert flag_value(args, "--served-model-name") == dep["metadata"]["labels"]["model"]
    # 准入上限应不小于批大小，否则它先于 max_num_seqs 生效（见 SchedulerConfig 的说明）
    queued, seqs = flag_value(args, "--max-num-queued-reqs"), flag_value(args, "--max-num-seqs")
    if queued and seqs:
        assert int(queued) >= int(seqs)
    # 0.33.0 的 API 服务没有 /ready，三个探针都只能用 /health
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    # 密钥只从 Secret 进环境变量，不出现在命令行
    assert "--api-key" not in long_flags(args)
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"]
    # /dev/shm 用内存卷，权重缓存用 PVC
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims and claims <= {
        d["metadata"]["name"] for _, d in of_kind("PersistentVolumeClaim", "vllm")
    }
    # Service 名为 vllm 时注入的 VLLM_PORT=tcp://… 会让 vLLM 启动失败
    services = {d["metadata"]["name"] for _, d in of_kind("Service")}
    assert pod.get("enableServiceLinks") is False or "vllm" not in services


def test_demo_deployment_probes_security_and_flags():
    dep = one("Deployment", "demo")
    pod, c, args = dep["spec"]["template"]["spec"], container(dep), argv(dep)
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert args[:4] == ["python", "-m", "ch09_serving", "serve"]
    assert flag_value(args, "--host") == "0.0.0.0"
    assert flag_value(args, "--port") == "8000"
    assert set(long_flags(args)) <= demo_serve_flags()
    assert "--api-key" not in long_flags(args)
    env = {e["name"]: e for e in c["env"]}
    assert env["BOOK_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"]
    resources = c["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()
    assert not any(k.startswith("nvidia.com/") for k in resources["limits"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


# ---- Service / HPA / PDB / ServiceMonitor ----
@pytest.mark.parametrize("item", of_kind("Service"), ids=ids(of_kind("Service")))
def test_service_selects_the_deployment_pods_and_port(item):
    path, svc = item
    dep = one("Deployment", path.parent.name)
    assert svc["spec"]["type"] == "ClusterIP"
    selector = svc["spec"]["selector"]
    assert selector and selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
    (port,) = svc["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == 8000
    assert port["targetPort"] in ports or port["targetPort"] in ports.values()


def adapter_rules() -> list[dict]:
    cm = one("ConfigMap", "vllm")
    return yaml.safe_load(cm["data"]["config.yaml"])["rules"]


def test_adapter_rule_renames_the_waiting_queue_metric():
    (rule,) = adapter_rules()
    assert "vllm:num_requests_waiting" in rule["seriesQuery"]
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert re.search(rule["name"]["matches"], "vllm:num_requests_waiting")
    assert rule["name"]["as"] == "vllm_num_requests_waiting"
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"]
    assert METRICS["vllm:num_requests_waiting"]["type"] == "gauge"


@pytest.mark.parametrize(
    "item", of_kind("HorizontalPodAutoscaler"), ids=ids(of_kind("HorizontalPodAutoscaler"))
)
def test_hpa_targets_the_deployment_with_the_adapter_metric(item):
    path, hpa = item
    spec = hpa["spec"]
    dep = one("Deployment", path.parent.name)
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Pods"
    names = {r["name"]["as"] for r in adapter_rules()}
    assert metric["pods"]["metric"]["name"] in names
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert {"scaleUp", "scaleDown"} <= spec["behavior"].keys()
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0


@pytest.mark.parametrize(
    "item", of_kind("PodDisruptionBudget"), ids=ids(of_kind("PodDisruptionBudget"))
)
def test_pdb_selects_the_deployment_pods(item):
    path, pdb = item
    dep = one("Deployment", path.parent.name)
    spec = pdb["spec"]
    assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    hpa = one("HorizontalPodAutoscaler", path.parent.name)
    if "maxUnavailable" in spec:  # 最少副本数要大于允许同时下线的数目，否则驱逐时全停
        assert hpa["spec"]["minReplicas"] > spec["maxUnavailable"]


@pytest.mark.parametrize("item", of_kind("ServiceMonitor"), ids=ids(of_kind("ServiceMonitor")))
def test_servicemonitor_scrapes_the_service_metrics_port(item):
    path, sm = item
    svc = one("Service", path.parent.name)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


# ---- 告警与面板里的指标名 ----
def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "monitoring" / "alerts.yaml").read_text("utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard() -> dict:
    return json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text("utf-8"))


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def check_metric_names(expr: str) -> None:
    demo = demo_exported()
    for token in METRIC_TOKEN.findall(expr):
        table = (
            METRICS if token.startswith("vllm:") else {k: {"type": v[0]} for k, v in demo.items()}
        )
        assert metric_known(token, table), f"{token} 不是 vLLM 0.33.0（或演示服务）的指标"
    for reason in re.findall(r'finished_reason="(\w+)"', expr):
        assert reason in DATA["label_values"]["finished_reason"], reason


def test_alert_rules_are_complete_and_use_real_metrics():
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        for key in ("summary", "description"):
            assert re.search(r"[\u4e00-\u9fff]", rule["annotations"][key]), rule["alert"]
        check_metric_names(rule["expr"])
    used = " ".join(r["expr"] for r in rules)
    for needed in (
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        "vllm:admission_rejections_total",
        "up{",
    ):
        assert needed in used, needed


def test_dashboard_variables_and_panel_metrics():
    dash = dashboard()
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "model_name" in variables["model_name"]["query"]["query"]
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert '$model_name"' in target["expr"], panel["title"]
            check_metric_names(target["expr"])
    used = " ".join(dashboard_exprs())
    for needed in (
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    ):
        assert needed in used, needed


def test_metrics_table_is_consistent():
    assert DATA["version"] == "0.33.0"
    for name, info in METRICS.items():
        assert name.startswith("vllm:")
        assert info["type"] in ("counter", "gauge", "histogram"), name
        assert re.fullmatch(r"vllm/[\w/]+\.py:\d+", info["source"]), name
        if info["type"] == "counter":
            assert name.endswith("_total"), name


def test_demo_server_metrics_are_a_subset_of_vllm():
    exported = demo_exported()
    assert DEMO_METRICS.keys() <= exported.keys()
    for name, (kind, labels) in exported.items():
        if name.startswith("book_"):
            continue
        assert name in METRICS, f"演示服务导出了 vLLM 0.33.0 没有的 {name}"
        assert kind == METRICS[name]["type"], name
        if labels is not None:
            assert labels == set(METRICS[name]["labels"]), name


# ---- Dockerfile ----
def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "demo" / "Dockerfile").read_text("utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_demo_dockerfile():
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    run = " ".join(rest for instr, rest in steps if instr == "RUN")
    assert '".[code]"' in run and "https://download.pytorch.org/whl/cpu" in run
    users = [rest for instr, rest in steps if instr == "USER"]
    assert users, "应以非 root 用户运行"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "runAsNonRoot 只能校验数字 UID"
    assert ("EXPOSE", "8000") in steps
    (cmd,) = [json.loads(rest) for instr, rest in steps if instr == "CMD"]
    assert cmd[:4] == ["python", "-m", "ch09_serving", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "8000"
    pod = one("Deployment", "demo")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)


def code_extra_closure() -> set[str]:
    """pyproject 里 code 组依赖的发行包，连同它们（按本机已装的元数据）传递依赖的包。"""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    def req_name(req: str) -> str:
        return norm(re.match(r"[A-Za-z0-9._-]+", req).group(0))

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    todo = [req_name(r) for r in project["optional-dependencies"]["code"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [req_name(r) for r in requires if "extra ==" not in r]
    return seen


def test_image_installs_every_third_party_import_of_the_server():
    local = {p.name for p in (ROOT / "code").iterdir() if p.is_dir()}
    imported = set()
    for path in SERVING.glob("*.py"):
        for m in re.finditer(r"^(?:from|import) ([A-Za-z_]\w*)", path.read_text("utf-8"), re.M):
            imported.add(m.group(1))
    third_party = sorted(imported - local - set(sys.stdlib_module_names) - {"__future__"})
    dists = md.packages_distributions()
    closure = code_extra_closure()
    missing = [
        m
        for m in third_party
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(m, [m])} & closure
    ]
    assert not missing, f"code 组（含传递依赖）装不出这些模块：{missing}"
