# 《LLM推理优化实战》— 站点与示例代码的常用命令。
# 在只有 Python 3.11+ 与 make 的新机器上：`make serve` 预览站点，`make test` 跑全部测试。

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
NODE   := tests/js
NBIN   := $(NODE)/node_modules/.bin
export NO_MKDOCS_2_WARNING := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help serve build test install lint lighthouse pdf figures results model drafts notebooks clean

help:
	@echo "make serve      建虚拟环境、只装站点依赖，并在 http://127.0.0.1:8000 预览"
	@echo "make test       装全部依赖，跑严格构建、目录与搜索测试、各章代码测试和 lint"
	@echo "make build      严格构建静态站点到 site/（含各章代码 zip 与离线版）"
	@echo "make lighthouse 构建站点，打印首页与三个章节页的 Lighthouse 四项分数（需 chromium）"
	@echo "make pdf        构建全书 PDF 到 build/book.pdf（需 chromium）"
	@echo "make install    装各章示例代码（python -m chNN_... 可用）"
	@echo "make figures    用各章代码重新生成文中的图"
	@echo "make notebooks  重新执行练习笔记本并写回输出"
	@echo "make results    重新测量附录 C 的结果表（约 10 分钟，记录本机环境）"
	@echo "make model      在本书正文上重新训练随书的小模型（约 15 分钟）"
	@echo "make drafts     重新训练第 8 章的草稿模型与 EAGLE 草稿头（约 10 分钟）"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# 只装站点所需：不含 PyTorch。
$(VENV)/.site: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[site]"
	@touch $@

# 发布：站点 + Playwright（打印 PDF）。不含 PyTorch，GitHub Pages 的构建也用它。
$(VENV)/.publish: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[site,publish]"
	@touch $@ $(VENV)/.site

# 全部：站点 + 各章代码（含 torch==2.13.0）+ 测试与 lint 工具。
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[site,publish,code,dev]"
	@touch $@ $(VENV)/.site $(VENV)/.publish

# 质量门禁用到的 Node 工具（Lighthouse、markdownlint、autocorrect），版本由 package-lock.json 钉死。
$(NODE)/node_modules/.installed: $(NODE)/package.json $(NODE)/package-lock.json
	npm ci --prefix $(NODE) --no-audit --no-fund --loglevel=error
	@touch $@

serve: $(VENV)/.site
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# 站点（含各章代码 zip）→ 离线版 zip → 全书 PDF（没有 chromium 时说明一句并跳过 PDF）。
build: $(VENV)/.publish
	rm -rf .cache/mkdocs-jupyter
	$(BIN)/mkdocs build --strict
	$(BIN)/python tests/tools/offline.py --out site/downloads/llm-inference-book-offline.zip
	$(BIN)/python tests/tools/pdf.py --out site/downloads/llm-inference-book.pdf --skip-without-browser

install: $(VENV)/.all

# 中文排版（autocorrect，规则在 .autocorrectrc）、Markdown（markdownlint，规则在 .markdownlint-cli2.yaml）、Python（ruff）。
lint: $(VENV)/.all $(NODE)/node_modules/.installed
	$(BIN)/ruff check code tests overrides
	$(BIN)/ruff format --check code tests overrides
	$(NBIN)/autocorrect --lint docs README.md
	$(NBIN)/markdownlint-cli2

test: $(VENV)/.all lint
	@command -v chromium >/dev/null || echo "注意：未找到 chromium，浏览器、Lighthouse 与 PDF 测试将跳过（CI=true 时判为失败）。"
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not serial"
	$(BIN)/python -m pytest -m serial

lighthouse: $(VENV)/.all $(NODE)/node_modules/.installed
	$(BIN)/python tests/tools/lighthouse.py

pdf: $(VENV)/.publish
	$(BIN)/python tests/tools/pdf.py --out build/book.pdf

results: $(VENV)/.all
	$(BIN)/python tests/tools/results.py

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
