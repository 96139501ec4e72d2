// 按需渲染 mermaid 图：自托管的 mermaid（约 3.5 MB）只在页面上真有图、且图快要进入视口时才加载。
// 这样没有图的页面、以及图在首屏以下的页面，首屏都不为它付出下载和解析的代价。
// 打印与测试可以调用 window.bookDiagrams.renderAll() 立即渲染全部图，它返回一个 Promise。
(function () {
  "use strict";

  var script = document.currentScript;
  var mermaidUrl = script && script.getAttribute("data-mermaid");
  var loading = null;

  function loadMermaid() {
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        var el = document.createElement("script");
        el.src = mermaidUrl;
        el.onload = function () {
          var dark = document.body.getAttribute("data-md-color-scheme") === "slate";
          window.mermaid.initialize({
            startOnLoad: false,
            theme: dark ? "dark" : "default",
            securityLevel: "strict",
          });
          resolve(window.mermaid);
        };
        el.onerror = function () {
          reject(new Error("mermaid 加载失败：" + mermaidUrl));
        };
        document.head.appendChild(el);
      });
    }
    return loading;
  }

  // superfences 输出 <pre class="book-diagram"><code>源码</code></pre>；换成 mermaid 认得的 <div>。
  function prepare(pre) {
    var div = document.createElement("div");
    div.className = "book-diagram mermaid";
    div.textContent = pre.textContent;
    pre.replaceWith(div);
    return div;
  }

  // 页面加载时只登记，不动 DOM（替换节点会触发整页重排）；进入视口时才换成 <div> 并渲染。
  var pending = Array.prototype.slice.call(document.querySelectorAll("pre.book-diagram"));
  var started = new Map(); // 节点 -> 它那一批渲染的 Promise

  function render(nodes) {
    var fresh = nodes.filter(function (n) {
      return !started.has(n);
    });
    if (fresh.length) {
      var batch = loadMermaid().then(function (mermaid) {
        return mermaid.run({ nodes: fresh.map(prepare) });
      });
      fresh.forEach(function (n) {
        started.set(n, batch);
      });
    }
    return Promise.all(
      nodes.map(function (n) {
        return started.get(n);
      }),
    );
  }

  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(
      function (entries) {
        var visible = entries
          .filter(function (e) {
            return e.isIntersecting;
          })
          .map(function (e) {
            observer.unobserve(e.target);
            return e.target;
          });
        render(visible);
      },
      { rootMargin: "400px 0px" },
    );
    pending.forEach(function (n) {
      observer.observe(n);
    });
  } else {
    render(pending);
  }

  // 打印前把所有图画好（浏览器的“打印”菜单也走这里）。
  window.addEventListener("beforeprint", function () {
    render(pending);
  });

  window.bookDiagrams = {
    renderAll: function () {
      return render(pending);
    },
  };
})();
