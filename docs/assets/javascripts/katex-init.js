// 用自托管的 KaTeX 渲染 pymdownx.arithmatex（generic 模式）输出的公式。
// document$ 是 Material 的页面流：即时导航（navigation.instant）换页后也会重新渲染。
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
  });
});
