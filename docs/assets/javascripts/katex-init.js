// 用自托管的 KaTeX 渲染 pymdownx.arithmatex（generic 模式）输出的公式。
// 按需渲染：公式快要进入视口时才排版。长页面有几十个公式，一次全排会在手机上阻塞主线程几百毫秒。
// 打印前（beforeprint）全部排好；打印脚本与测试可以调用 window.bookMath.renderAll()。
(function () {
  "use strict";

  var options = {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
  };
  var pending = [];

  function render(el) {
    var i = pending.indexOf(el);
    if (i < 0) return;
    pending.splice(i, 1);
    renderMathInElement(el, options);
  }

  function renderAll() {
    pending.slice().forEach(render);
  }

  // document$ 是 Material 的页面流：页面（重新）加载后发出一次。
  document$.subscribe(function (doc) {
    pending = Array.prototype.slice.call(doc.body.querySelectorAll(".arithmatex"));
    if (!("IntersectionObserver" in window)) return renderAll();
    var observer = new IntersectionObserver(
      function (entries) {
        entries.forEach(function (e) {
          if (e.isIntersecting) {
            observer.unobserve(e.target);
            render(e.target);
          }
        });
      },
      { rootMargin: "600px 0px" },
    );
    pending.forEach(function (el) {
      observer.observe(el);
    });
  });

  window.addEventListener("beforeprint", renderAll);
  window.bookMath = { renderAll: renderAll };
})();
