"""交互计算器（docs/assets/javascripts/calculators.js）与本书 Python 包逐例对照。

用例在 tests/data/calculator-cases.yml。每一例都分别用 Python 函数和 Node 里的 JS 核心计算，
要求结果相同（整数逐位相等，浮点 ``math.isclose(rel_tol=1e-12)``），页面上显示的文字也要等于
Python 按同样规则格式化的结果。浏览器测试打开构建好的页面，填一组输入，核对显示的数字和出错提示。
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest
import yaml
from ch01_economics.cost import cost_per_million_tokens
from ch03_gpu.vram import DTYPE_BYTES, kv_bytes_per_token, kv_cache_bytes
from ch05_kv_cache.kv_size import load_layouts
from ch08_speculative.speculative import expected_speedup, expected_tokens_per_step
from conftest import ROOT, require_tool
from tinyllm import ModelConfig

SCRIPT = ROOT / "docs" / "assets" / "javascripts" / "calculators.js"
CASES = yaml.safe_load((ROOT / "tests" / "data" / "calculator-cases.yml").read_text("utf-8"))
SNIPPETS = ROOT / "overrides" / "snippets" / "calculators"
PAGES = {
    "kv": "ch03-gpu/03.3-vram-formula/",
    "spec": "ch08-speculative/08.5-performance/",
    "cost": "ch01-motivation/01.1-efficiency-revolution/",
}
NO_NODE = "未找到 node：跳过计算器的 JS/Python 对照测试（Debian 上 apt-get install nodejs）"

# 在 Node 里跑 JS 核心：从标准输入读用例，把公式结果、run() 的结果和报错打印成 JSON。
NODE_RUNNER = r"""
const calc = require(process.argv[1]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const attempt = (fn) => {
  try { return { value: fn() }; } catch (e) { return { error: e.message }; }
};
const out = {
  kv: input.kv.map((c) => ({
    per_token: calc.kvBytesPerToken(c.layers, c.kv_heads, c.head_dim, c.dtype),
    total: calc.kvCacheBytes(c.layers, c.kv_heads, c.head_dim, c.tokens, c.batch, c.dtype),
  })),
  spec: input.spec.map((c) => ({
    tokens_per_step: calc.expectedTokensPerStep(c.alpha, c.gamma),
    speedup: calc.expectedSpeedup(c.alpha, c.gamma, c.c),
  })),
  cost: input.cost.map((c) => attempt(() =>
    calc.costPerMillionTokens(c.gpu_hourly_usd, c.tokens_per_second, c.num_gpus, c.utilization))),
  run: input.run.map((r) => calc.run(r.kind, r.raw)),
  format: input.format.map(([x, d]) => calc.formatNumber(x, d)),
  presets: calc.KV_PRESETS,
  dtype_bytes: calc.DTYPE_BYTES,
};
process.stdout.write(JSON.stringify(out));
"""


def node_path() -> str:
    """node 的路径；没有时跳过，但 ``CI=true`` 时判为失败。"""
    return require_tool(shutil.which("node"), NO_NODE)


# ---- Python 一侧：本书的函数，加上与 calculators.js 相同的显示格式 ----


def kv_config(case: dict) -> ModelConfig:
    """只有层数、头数和每头维度进入 KV 公式；其余字段取能通过校验的值。"""
    return ModelConfig(
        hidden_size=case["q_heads"] * case["head_dim"],
        num_hidden_layers=case["layers"],
        num_attention_heads=case["q_heads"],
        num_key_value_heads=case["kv_heads"],
        head_dim=case["head_dim"],
    )


def python_kv(case: dict) -> tuple[float, float]:
    cfg = kv_config(case)
    per_token = kv_bytes_per_token(cfg, case["dtype"])
    return per_token, kv_cache_bytes(cfg, case["tokens"], case["batch"], case["dtype"])


def python_spec(case: dict) -> tuple[float, float]:
    return (
        expected_tokens_per_step(case["alpha"], case["gamma"]),
        expected_speedup(case["alpha"], case["gamma"], case["c"]),
    )


def python_cost(case: dict) -> float:
    return cost_per_million_tokens(
        case["gpu_hourly_usd"],
        case["tokens_per_second"],
        num_gpus=case["num_gpus"],
        utilization=case["utilization"],
    )


def kv_kind(q_heads: int, kv_heads: int) -> str:
    if kv_heads == q_heads:
        return "MHA：每个 Q 头一组 KV"
    if kv_heads == 1:
        return "MQA：所有 Q 头共享一组 KV"
    return f"GQA：每 {q_heads // kv_heads} 个 Q 头共享一组 KV"


def expected_text(kind: str, case: dict) -> dict[str, str]:
    """页面上 data-out 元素应显示的文字。"""
    if kind == "kv":
        per_token, total = python_kv(case)
        return {
            "kind": kv_kind(case["q_heads"], case["kv_heads"]),
            "per-token": f"{per_token:,.0f} B（{per_token / 1024:,.2f} KiB）",
            "total-gb": f"{total / 1e9:,.2f} GB",
            "total-gib": f"{total / 2**30:,.2f} GiB",
        }
    if kind == "spec":
        tokens, speedup = python_spec(case)
        return {"tokens-per-step": f"{tokens:,.2f} 个", "speedup": f"{speedup:,.2f}×"}
    return {"usd-per-million": f"{python_cost(case):,.4f} 美元"}


def raw_inputs(case: dict) -> dict[str, str]:
    """用例 → 表单里各输入框的字符串值。"""
    return {k: str(v) for k, v in case.items() if k != "id"}


# ---- Node 一侧：一次运行全部用例 ----

BAD_COST = [  # Python 会抛 ValueError 的参数组合，JS 也必须拒绝
    {"gpu_hourly_usd": 0, "tokens_per_second": 100, "num_gpus": 1, "utilization": 1},
    {"gpu_hourly_usd": 2, "tokens_per_second": -1, "num_gpus": 1, "utilization": 1},
    {"gpu_hourly_usd": 2, "tokens_per_second": 100, "num_gpus": 0, "utilization": 1},
    {"gpu_hourly_usd": 2, "tokens_per_second": 100, "num_gpus": 1, "utilization": 0},
    {"gpu_hourly_usd": 2, "tokens_per_second": 100, "num_gpus": 1, "utilization": 1.5},
]


# 格式化：千位分隔符，以及“恰好一半”时与 Python 一样取偶数（0.125 → 0.12，不是 toFixed 的 0.13）
FORMAT_CASES = [
    (0.125, 2),
    (0.375, 2),
    (2.5, 0),
    (3.5, 0),
    (2.675, 2),
    (1.005, 2),
    (1234567.125, 2),
    (131072.0, 0),
    (0.13888888888888887, 4),
    (9.999999, 2),
    (0.0, 2),
]


def run_requests() -> list[dict]:
    requests = [{"kind": kind, "raw": raw_inputs(case)} for kind in PAGES for case in CASES[kind]]
    for kind, bad_cases in CASES["invalid"].items():
        base = raw_inputs(CASES[kind][0])
        requests += [{"kind": kind, "raw": {**base, **bad["raw"]}} for bad in bad_cases]
    return requests


@pytest.fixture(scope="module")
def js():
    node = node_path()
    payload = {
        "kv": CASES["kv"],
        "spec": CASES["spec"],
        "cost": CASES["cost"] + BAD_COST,
        "run": run_requests(),
        "format": FORMAT_CASES,
    }
    proc = subprocess.run(
        [node, "-e", NODE_RUNNER, str(SCRIPT)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ids(kind: str) -> list[str]:
    return [case["id"] for case in CASES[kind]]


def test_case_table_is_big_enough():
    for kind in PAGES:
        assert len(CASES[kind]) >= 6, kind
        assert len(CASES["invalid"][kind]) >= 3, kind


@pytest.mark.parametrize("i", range(len(CASES["kv"])), ids=ids("kv"))
def test_kv_matches_ch03_gpu(js, i):
    per_token, total = python_kv(CASES["kv"][i])
    assert js["kv"][i]["per_token"] == per_token
    assert js["kv"][i]["total"] == total


@pytest.mark.parametrize("i", range(len(CASES["spec"])), ids=ids("spec"))
def test_spec_matches_ch08_speculative(js, i):
    tokens, speedup = python_spec(CASES["spec"][i])
    assert math.isclose(js["spec"][i]["tokens_per_step"], tokens, rel_tol=1e-12)
    assert math.isclose(js["spec"][i]["speedup"], speedup, rel_tol=1e-12)


@pytest.mark.parametrize("i", range(len(CASES["cost"])), ids=ids("cost"))
def test_cost_matches_ch01_economics(js, i):
    assert math.isclose(js["cost"][i]["value"], python_cost(CASES["cost"][i]), rel_tol=1e-12)


@pytest.mark.parametrize("bad", BAD_COST)
def test_cost_rejects_what_python_rejects(js, bad):
    with pytest.raises(ValueError):
        python_cost(bad)
    assert "error" in js["cost"][len(CASES["cost"]) + BAD_COST.index(bad)]


def test_format_number_matches_python(js):
    assert js["format"] == [f"{x:,.{d}f}" for x, d in FORMAT_CASES]


def test_displayed_text_matches_python_formatting(js):
    """run() 的格式化文字（页面显示的就是它）等于 Python 按同样规则格式化的结果。"""
    results = iter(js["run"])
    for kind in PAGES:
        for case in CASES[kind]:
            result = next(results)
            assert result["ok"], (case["id"], result)
            assert result["text"] == expected_text(kind, case), case["id"]


def test_invalid_inputs_give_a_chinese_message(js):
    results = js["run"][sum(len(CASES[kind]) for kind in PAGES) :]
    bad_cases = [(kind, bad) for kind, cases in CASES["invalid"].items() for bad in cases]
    assert len(results) == len(bad_cases)
    for (kind, bad), result in zip(bad_cases, results, strict=True):
        assert not result["ok"], (kind, bad)
        assert result["field"] == bad["field"], (kind, bad, result)
        assert "NaN" not in result["error"] and any(
            "\u4e00" <= ch <= "\u9fff" for ch in result["error"]
        )


def test_presets_and_dtypes_match_python_data(js):
    assert js["dtype_bytes"] == DTYPE_BYTES
    layouts = load_layouts()
    for key, preset in js["presets"].items():
        m = layouts[key]
        assert m.kind != "mla"
        assert (preset["layers"], preset["q_heads"], preset["kv_heads"], preset["head_dim"]) == (
            m.num_hidden_layers,
            m.num_attention_heads,
            m.num_key_value_heads,
            m.head_dim,
        ), key
        # ch05_kv_cache 的每 token 字节数也是同一个数
        case = {"layers": m.num_hidden_layers, "q_heads": m.num_attention_heads}
        case |= {"kv_heads": m.num_key_value_heads, "head_dim": m.head_dim}
        assert kv_bytes_per_token(kv_config(case)) == m.bytes_per_token("bf16")
    # 下拉框里的模型与 JS 的预设一一对应，另有“自定义”
    html = (SNIPPETS / "kv.html").read_text("utf-8")
    for key in js["presets"]:
        assert f'<option value="{key}"' in html
    assert '<option value="custom"' in html


def test_snippet_defaults_are_the_first_case():
    """片段里的默认输入值和预填的结果，就是用例表里每种计算器的第一例（正文讨论过的那组数）。"""
    from bs4 import BeautifulSoup

    for kind in PAGES:
        soup = BeautifulSoup((SNIPPETS / f"{kind}.html").read_text("utf-8"), "html.parser")
        root = soup.select_one(f'[data-book-calc="{kind}"]')
        assert root is not None
        case = CASES[kind][0]
        for name, value in raw_inputs(case).items():
            el = root.select_one(f'[name="{name}"]')
            assert el is not None, (kind, name)
            if el.name == "select":
                assert el.select_one("option[selected]")["value"] == value, (kind, name)
            else:
                assert float(el["value"]) == float(value), (kind, name)
        for el in root.select("input, select"):  # 无障碍：每个输入都有 <label for>
            assert root.select_one(f'label[for="{el["id"]}"]') is not None, el["id"]
        shown = {el["data-out"]: el.get_text() for el in root.select("[data-out]")}
        shown.pop("error")
        assert shown == expected_text(kind, case), kind


def test_script_loads_only_on_calculator_pages(built_site):
    site, _ = built_site
    for kind, page in PAGES.items():
        html = (site / page / "index.html").read_text("utf-8")
        assert f'data-book-calc="{kind}"' in html
        assert "assets/javascripts/calculators.js" in html
        assert 'markdown="' not in html.split(f'data-book-calc="{kind}"')[1][:2000]
    home = (site / "index.html").read_text("utf-8")
    assert "calculators.js" not in home


# ---- 浏览器：在构建好的页面上填输入、读结果 ----


def open_calculator(browser, site_url, kind):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site_url + PAGES[kind])
    root = page.locator(f'[data-book-calc="{kind}"]')
    root.and_(page.locator("[data-book-calc-ready]")).wait_for()
    return page, root, errors


def fill_case(root, case: dict) -> None:
    for name, value in raw_inputs(case).items():
        el = root.locator(f'[name="{name}"]')
        if el.evaluate("e => e.tagName") == "SELECT":
            el.select_option(value)
        else:
            el.fill(value)


def shown(root) -> dict[str, str]:
    return root.locator("[data-out]").evaluate_all(
        "els => Object.fromEntries(els.filter(e => e.dataset.out !== 'error')"
        ".map(e => [e.dataset.out, e.textContent]))"
    )


def assert_error_shown(root, text: str) -> None:
    error = root.locator('[data-out="error"]')
    assert error.is_visible()
    assert text in error.text_content()
    assert set(shown(root).values()) == {"—"}


@pytest.mark.parametrize(
    ("kind", "case_id", "bad_name", "bad_value", "message"),
    [
        ("kv", "llama-3-8b-batch-32", "batch", "-1", "并发请求数"),
        ("spec", "leviathan-t5", "alpha", "1.5", "接受率 α"),
        ("cost", "deepseek-node", "utilization", "", "请填写利用率"),
    ],
)
def test_calculator_in_browser(browser, site_url, kind, case_id, bad_name, bad_value, message):
    page, root, errors = open_calculator(browser, site_url, kind)
    try:
        assert shown(root) == expected_text(kind, CASES[kind][0])  # 默认值
        case = next(c for c in CASES[kind] if c["id"] == case_id)
        fill_case(root, case)
        assert shown(root) == expected_text(kind, case)
        assert not root.locator('[data-out="error"]').is_visible()

        root.locator(f'[name="{bad_name}"]').fill(bad_value)
        assert_error_shown(root, message)
        assert root.locator(f'[name="{bad_name}"]').get_attribute("aria-invalid") == "true"

        fill_case(root, case)  # 改回合法值，提示消失
        assert shown(root) == expected_text(kind, case)
        assert not root.locator('[data-out="error"]').is_visible()
        assert not errors
    finally:
        page.close()


def test_kv_presets_in_browser(browser, site_url):
    page, root, errors = open_calculator(browser, site_url, "kv")
    try:
        root.locator('[name="preset"]').select_option("llama-3-70b")
        root.locator('[name="tokens"]').fill("131072")
        case = next(c for c in CASES["kv"] if c["id"] == "llama-3-70b-128k")
        assert shown(root) == expected_text("kv", case)
        assert shown(root)["total-gib"] == "40.00 GiB"  # 5.5.2 节 ch05_kv_cache size 的输出

        # 手改结构：预设变成“自定义”，而且 64 个 Q 头不能均分给 5 个 KV 头
        root.locator('[name="kv_heads"]').fill("5")
        assert root.locator('[name="preset"]').input_value() == "custom"
        assert_error_shown(root, "整数倍")
        assert not errors
    finally:
        page.close()
