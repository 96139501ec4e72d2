"""附录：术语表与悬停缩写同源一致；附录 C 的结果表来自生成器、带运行环境、都被页面引用。"""

from __future__ import annotations

import re
import sys

import pytest
from conftest import DOCS, ROOT

sys.path.insert(0, str(ROOT / "tests" / "tools"))
import results  # noqa: E402

ABBR = ROOT / "overrides" / "snippets" / "abbreviations.md"
GLOSSARY = DOCS / "appendix-a" / "A.5-glossary.md"


def abbreviations() -> dict[str, str]:
    """``*[TERM]: English，中文`` → {TERM: English}。"""
    out = {}
    for line in ABBR.read_text("utf-8").splitlines():
        m = re.match(r"^\*\[(.+?)\]:\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).split("，", 1)[0].strip()
    return out


def glossary_rows() -> dict[str, str]:
    rows = {}
    for line in GLOSSARY.read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = cells[1]
    return rows


def test_every_hover_abbreviation_is_in_the_glossary_with_the_same_expansion():
    abbr, rows = abbreviations(), glossary_rows()
    assert len(abbr) >= 20
    missing = sorted(set(abbr) - set(rows))
    assert not missing, f"A.5 缺少这些缩写：{missing}"
    differ = {t: (abbr[t], rows[t]) for t in abbr if abbr[t] != rows[t]}
    assert not differ, f"A.5 与 abbreviations.md 的英文全称不一致：{differ}"


def test_abbreviation_definitions_are_safe_in_html_attributes():
    for line in ABBR.read_text("utf-8").splitlines():
        if line.startswith("*["):
            assert '"' not in line and "<" not in line and "`" not in line, line


def test_result_snippets_come_from_the_generator_and_record_their_environment():
    made = {p.stem for p in results.OUT.glob("*.md")}
    assert made == set(results.RUNS), "overrides/snippets/results 与 results.RUNS 不一致"
    pages = "\n".join(p.read_text("utf-8") for p in (DOCS / "appendix-c").glob("*.md"))
    for name, (title, argv) in results.RUNS.items():
        text = (results.OUT / f"{name}.md").read_text("utf-8")
        for field in ("机器：", "系统：", "软件：Python ", "torch ", "日期：", "```text"):
            assert field in text, f"{name}.md 缺少 {field}"
        assert f"- 命令：`python -m {' '.join(argv)}`" in text, name
        assert title in text
        assert f'--8<-- "results/{name}.md"' in pages, f"附录 C 没有引用 results/{name}.md"


def test_results_tool_lists_runs_and_rejects_unknown_names(capsys):
    assert results.main(["--list"]) == 0
    assert "ch05_kv_cache bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        results.main(["nope"])
    assert e.value.code == 2
    assert "未知条目 nope" in capsys.readouterr().err


def test_results_tool_runs_one_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "OUT", tmp_path)
    monkeypatch.setitem(results.RUNS, "kv-size", ("KV 大小", ["ch05_kv_cache", "size"]))
    path = results.run("kv-size")
    text = path.read_text("utf-8")
    assert text.startswith("**KV 大小**") and "- 命令：`python -m ch05_kv_cache size`" in text
