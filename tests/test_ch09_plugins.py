"""9.2.5 节的插件：真的构建并安装示例插件，再用 importlib.metadata 发现它的入口点——不需要 vLLM。"""

from __future__ import annotations

import shutil
import subprocess
import sys
import types

import pytest
from ch09_serving.plugins import GROUPS, discover, load_general_plugins
from conftest import ROOT

PLUGIN = ROOT / "code/ch09_serving/plugin_example"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """pip 构建 wheel 并装到一个临时目录（不碰当前环境）；离线，用已装的 setuptools。"""
    tmp = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(PLUGIN, tmp / "src")  # 在副本上构建：build/、egg-info 不落进仓库
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist",
                    src], check=True, timeout=120)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("book_vllm_plugin-0.1.0-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp / "site", wheel], check=True,
                   timeout=120)  # fmt: skip
    return str(tmp / "site")


@pytest.fixture
def fake_vllm(monkeypatch, site):
    """一个只有 __version__ 和 ModelRegistry 的假 vllm 模块，记录插件做了什么。"""
    registered = {}
    registry = types.SimpleNamespace(
        get_supported_archs=lambda: set(registered),
        register_model=lambda arch, impl: registered.__setitem__(arch, impl),
    )
    vllm = types.ModuleType("vllm")
    vllm.__version__, vllm.ModelRegistry = "0.33.0", registry
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.syspath_prepend(site)
    for name in [m for m in sys.modules if m.startswith("book_vllm_plugin")]:
        monkeypatch.delitem(sys.modules, name)
    return vllm, registered


def test_entry_point_is_discovered_without_vllm(site):
    assert "vllm" not in sys.modules or not hasattr(sys.modules["vllm"], "LLM")
    eps = discover("vllm.general_plugins", [site])
    assert [(ep.name, ep.value) for ep in eps] == [("book_tinyllm", "book_vllm_plugin:register")]
    assert all(discover(g, [site]) == [] for g in GROUPS if g != "vllm.general_plugins")


def test_register_adds_the_architecture_and_is_reentrant(fake_vllm, site):
    _, registered = fake_vllm
    assert load_general_plugins(env={}, path=[site]) == ["book_tinyllm"]
    load_general_plugins(env={}, path=[site])  # 每个进程都会调一次：第二次不能出错
    assert registered == {
        "BookTinyLLMForCausalLM": "vllm.model_executor.models.llama:LlamaForCausalLM"
    }


def test_vllm_plugins_env_filters_by_name(fake_vllm, site):
    _, registered = fake_vllm
    assert load_general_plugins(env={"VLLM_PLUGINS": "other"}, path=[site]) == []
    assert load_general_plugins(env={"VLLM_PLUGINS": "other,book_tinyllm"}, path=[site]) == [
        "book_tinyllm"
    ]
    # vLLM 按逗号切开、不去空格：多一个空格就匹配不上
    assert load_general_plugins(env={"VLLM_PLUGINS": "other, book_tinyllm"}, path=[site]) == []
    assert registered


def test_untested_vllm_version_is_skipped_with_a_warning(fake_vllm, site, caplog):
    vllm, registered = fake_vllm
    vllm.__version__ = "0.35.1"
    load_general_plugins(env={}, path=[site])
    assert registered == {} and "只在 vLLM 0.33.x 上测过" in caplog.text
