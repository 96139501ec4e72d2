# 《LLM推理优化实战》— 站点与示例代码的常用命令。
# 在只有 Python 3.11+ 与 make 的新机器上：`make serve` 预览站点，`make test` 跑全部测试。

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
export NO_MKDOCS_2_WARNING := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help serve build test install lint figures model drafts notebooks clean

help:
	@echo "make serve      建虚拟环境、只装站点依赖，并在 http://127.0.0.1:8000 预览"
	@echo "make test       装全部依赖，跑严格构建、目录与搜索测试、各章代码测试和 lint"
	@echo "make build      严格构建静态站点到 site/"
	@echo "make install    装各章示例代码（python -m chNN_... 可用）"
	@echo "make figures    用各章代码重新生成文中的图"
	@echo "make notebooks  重新执行练习笔记本并写回输出"
	@echo "make model      在本书正文上重新训练随书的小模型（约 15 分钟）"
	@echo "make drafts     重新训练第 8 章的草稿模型与 EAGLE 草稿头（约 10 分钟）"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# 只装站点所需：不含 PyTorch。
$(VENV)/.site: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[site]"
	@touch $@

# 全部：站点 + 各章代码（含 torch==2.13.0）+ 测试与 lint 工具。
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[site,code,dev]"
	@touch $@ $(VENV)/.site

serve: $(VENV)/.site
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

build: $(VENV)/.site
	rm -rf .cache/mkdocs-jupyter
	$(BIN)/mkdocs build --strict

install: $(VENV)/.all

lint: $(VENV)/.all
	$(BIN)/ruff check code tests overrides
	$(BIN)/ruff format --check code tests overrides

test: $(VENV)/.all lint
	$(BIN)/python -m pytest

figures: $(VENV)/.all
	$(BIN)/python -m ch01_economics plot --out docs/assets/figures/ch01-price-decline.svg
	$(BIN)/python -m ch03_gpu plot --model llama-3-8b --gpu h100-sxm \
		--out docs/assets/figures/ch03-roofline-h100.svg
	$(BIN)/python -m ch05_kv_cache steps --plot docs/assets/figures/ch05-time-per-token.svg
	$(BIN)/python -m ch06_scheduling compare --plot docs/assets/figures/ch06-batching-timeline.svg
	$(BIN)/python -m ch06_scheduling pd --plot docs/assets/figures/ch06-pd-vs-colocated.svg
	$(BIN)/python -m ch07_quantization primitives --plot docs/assets/figures/ch07-error-vs-bits.svg
	$(BIN)/python -m ch08_speculative sweep --proposers draft draft-xs eagle ngram \
		--plot docs/assets/figures/ch08-gamma-sweep.svg

# 在本书正文上重新训练随书的小模型（2 核 CPU 约 15 分钟），写入 code/tinyllm/checkpoint。
model: $(VENV)/.all
	$(BIN)/python -m tinyllm.train --docs docs --out code/tinyllm/checkpoint

# 第 8 章的草稿：与随书模型同语料的两个小模型，以及在其特征上训练的 EAGLE 式草稿头（约 10 分钟）。
drafts: $(VENV)/.all
	$(BIN)/python -m tinyllm.train --docs docs --preset draft \
		--corpus-of code/tinyllm/checkpoint --out code/ch08_speculative/checkpoints/draft
	$(BIN)/python -m tinyllm.train --docs docs --preset draft-xs \
		--corpus-of code/tinyllm/checkpoint --out code/ch08_speculative/checkpoints/draft-xs
	$(BIN)/python -m ch08_speculative train-eagle --out code/ch08_speculative/checkpoints/eagle

notebooks: $(VENV)/.all
	$(BIN)/python tests/tools/notebooks.py --write

clean:
	rm -rf site .cache .pytest_cache
