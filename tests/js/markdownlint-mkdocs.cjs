// markdownlint 自定义规则（由 .markdownlint-cli2.yaml 的 customRules 加载）。
//
// mkdocs-material 的 admonition（!!! / ???）与内容标签页（===）的正文缩进 4 格，CommonMark 把它们
// 解析成缩进代码块，markdownlint 的内置规则看不到里面的围栏代码和脚注引用：MD040 查不到正文里
// 缺语言的围栏，MD053 会把只在正文里引用的脚注误报为“未使用”。这两条规则直接按行扫描，
// 不区分缩进，补上这两项检查。
"use strict";

const FENCE = /^(\s*)(`{3,}|~{3,})(.*)$/;

// 逐行调用 visit(line, index, inFence)，围栏的开始行与结束行算作围栏内。
function scanLines(lines, visit) {
  let open = null;
  lines.forEach((line, index) => {
    const m = FENCE.exec(line);
    if (open === null) {
      if (m) {
        open = { marker: m[2], info: m[3].trim(), index };
        visit(line, index, true, open);
        return;
      }
      visit(line, index, false, null);
      return;
    }
    if (m && m[2][0] === open.marker[0] && m[2].length >= open.marker.length && m[3].trim() === "") {
      visit(line, index, true, null);
      open = null;
      return;
    }
    visit(line, index, true, null);
  });
}

const fenceLanguage = {
  names: ["book-fence-language", "BOOK001"],
  description: "Fenced code blocks (also inside admonitions and tabs) should have a language",
  tags: ["code", "language"],
  parser: "none",
  function: (params, onError) => {
    scanLines(params.lines, (line, index, inFence, opening) => {
      if (opening && opening.index === index && opening.info === "") {
        onError({ lineNumber: index + 1, context: line.trim() });
      }
    });
  },
};

const FOOTNOTE_DEF = /^\s*\[\^([^\]\s]+)\]:/;
const FOOTNOTE_REF = /\[\^([^\]\s]+)\](?!:)/g;
const CODE_SPAN = /(`+)[^`]*?\1/g;

const footnotes = {
  names: ["book-footnotes", "BOOK002"],
  description: "Footnotes should be defined once and referenced",
  tags: ["links"],
  parser: "none",
  function: (params, onError) => {
    const defs = new Map();
    const refs = new Map();
    scanLines(params.lines, (line, index, inFence) => {
      if (inFence) {
        return;
      }
      const def = FOOTNOTE_DEF.exec(line);
      if (def) {
        if (defs.has(def[1])) {
          onError({ lineNumber: index + 1, detail: `Duplicate footnote definition: ${def[1]}`, context: line.trim().slice(0, 40) });
        } else {
          defs.set(def[1], index);
        }
      }
      const text = (def ? line.slice(def[0].length) : line).replace(CODE_SPAN, "");
      for (const m of text.matchAll(FOOTNOTE_REF)) {
        if (!refs.has(m[1])) {
          refs.set(m[1], index);
        }
      }
    });
    for (const [id, index] of refs) {
      if (!defs.has(id)) {
        onError({ lineNumber: index + 1, detail: `Footnote reference without definition: ${id}`, context: `[^${id}]` });
      }
    }
    for (const [id, index] of defs) {
      if (!refs.has(id)) {
        onError({ lineNumber: index + 1, detail: `Unused footnote definition: ${id}`, context: `[^${id}]:` });
      }
    }
  },
};

module.exports = [fenceLanguage, footnotes];
