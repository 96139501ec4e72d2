// 书中的三个交互计算器：KV Cache 大小、投机采样加速比、每百万 token 成本。
// 公式逐字照搬本书的 Python 包，tests/test_calculators.py 逐例核对两边结果相同：
//   kv   → ch03_gpu.vram.kv_bytes_per_token / kv_cache_bytes（code/ch03_gpu/vram.py）
//   spec → ch08_speculative.speculative.expected_tokens_per_step / expected_speedup
//   cost → ch01_economics.cost.cost_per_million_tokens（code/ch01_economics/cost.py）
// 纯函数部分在浏览器里是 window.bookCalc，在 Node 里是 require() 的返回值；
// 页面上每个带 data-book-calc="kv|spec|cost" 的元素是一个计算器，按 <input>/<select> 的 name 读输入，
// 把结果写进带 data-out="..." 的元素。不联网，不依赖任何库。
(function (root) {
  "use strict";

  // 每个元素的字节数，与 ch03_gpu.vram.DTYPE_BYTES 相同（INT4 按 0.5 字节，不含分组量化的 scale）。
  var DTYPE_BYTES = { fp32: 4.0, bf16: 2.0, fp16: 2.0, fp8: 1.0, int8: 1.0, int4: 0.5 };
  var GB = 1e9; // ch03_gpu 的口径：十进制 GB
  var GIB = Math.pow(2, 30); // vLLM 日志与 ch05_kv_cache.human_bytes 的口径

  // 非 MLA 模型的注意力结构，照抄 code/ch05_kv_cache/data/kv_models.yml（测试核对两者一致）。
  var KV_PRESETS = {
    "llama-3-8b": { name: "Llama-3-8B（GQA）", layers: 32, q_heads: 32, kv_heads: 8, head_dim: 128 },
    "llama-3-70b": { name: "Llama-3-70B（GQA）", layers: 80, q_heads: 64, kv_heads: 8, head_dim: 128 },
    "llama-2-7b": { name: "Llama-2-7B（MHA）", layers: 32, q_heads: 32, kv_heads: 32, head_dim: 128 },
    "mistral-7b": { name: "Mistral-7B-v0.1（GQA）", layers: 32, q_heads: 32, kv_heads: 8, head_dim: 128 },
    "qwen2.5-7b": { name: "Qwen2.5-7B-Instruct（GQA）", layers: 28, q_heads: 28, kv_heads: 4, head_dim: 128 },
    "falcon-7b": { name: "Falcon-7B（MQA）", layers: 32, q_heads: 71, kv_heads: 1, head_dim: 64 },
  };

  // ---- 公式：与 Python 同样的运算顺序，浮点结果逐位相同 ----

  /** ch03_gpu.vram.kv_bytes_per_token：每层一份 K、一份 V，每份 kv_heads × head_dim 个数。 */
  function kvBytesPerToken(layers, kvHeads, headDim, dtype) {
    if (!Object.prototype.hasOwnProperty.call(DTYPE_BYTES, dtype)) {
      throw new Error("未知的精度 " + dtype);
    }
    return 2 * layers * kvHeads * headDim * DTYPE_BYTES[dtype];
  }

  /** ch03_gpu.vram.kv_cache_bytes：每 token 的 KV × token 数 × 并发条数。 */
  function kvCacheBytes(layers, kvHeads, headDim, tokens, batch, dtype) {
    return kvBytesPerToken(layers, kvHeads, headDim, dtype) * tokens * batch;
  }

  /** ch08_speculative.speculative.expected_tokens_per_step：(1 − α^(γ+1)) / (1 − α)。 */
  function expectedTokensPerStep(alpha, gamma) {
    if (alpha >= 1) {
      return gamma + 1.0;
    }
    return (1 - Math.pow(alpha, gamma + 1)) / (1 - alpha);
  }

  /** ch08_speculative.speculative.expected_speedup：上式 ÷ (γc + 1)。 */
  function expectedSpeedup(alpha, gamma, c) {
    return expectedTokensPerStep(alpha, gamma) / (gamma * c + 1);
  }

  /** ch01_economics.cost.cost_per_million_tokens：同样的参数检查，同样的报错条件。 */
  function costPerMillionTokens(gpuHourlyUsd, tokensPerSecond, numGpus, utilization) {
    if (numGpus === undefined) numGpus = 1;
    if (utilization === undefined) utilization = 1.0;
    if (gpuHourlyUsd <= 0 || tokensPerSecond <= 0) {
      throw new RangeError("gpu_hourly_usd 和 tokens_per_second 必须为正数");
    }
    if (numGpus < 1) {
      throw new RangeError("num_gpus 至少为 1");
    }
    if (!(utilization > 0 && utilization <= 1)) {
      throw new RangeError("utilization 必须在 (0, 1] 之间");
    }
    var usdPerHour = gpuHourlyUsd * numGpus;
    var tokensPerHour = tokensPerSecond * 3600 * utilization;
    return (usdPerHour / tokensPerHour) * 1000000;
  }

  // ---- 格式化：千位分隔符 + 固定小数位（等同 Python 的 f"{x:,.Nf}"） ----

  // toFixed 与 Python 的格式化都按二进制精确值舍入，只有“恰好一半”时不同：toFixed 进位，
  // Python 取偶数（0.125 → "0.12"）。这里照 Python 的做法，让页面上的数字与书中的输出一致。
  function toFixedHalfEven(x, decimals) {
    var exact;
    try {
      exact = x.toFixed(100); // ES2018 起上限是 100 位；足以看出是否恰好一半
    } catch (err) {
      exact = x.toFixed(20);
    }
    var dot = exact.indexOf(".");
    if (/^50*$/.test(exact.slice(dot + 1 + decimals))) {
      var kept = exact.slice(0, decimals ? dot + 1 + decimals : dot);
      if (Number(kept.charAt(kept.length - 1)) % 2 === 0) return kept;
    }
    return x.toFixed(decimals);
  }

  function formatNumber(x, decimals) {
    if (!Number.isFinite(x)) return String(x);
    if (Math.abs(x) >= 1e21) return x.toExponential(3); // toFixed 在这里也会退回指数形式
    var s = toFixedHalfEven(Math.abs(x), decimals);
    var dot = s.indexOf(".");
    var intPart = dot < 0 ? s : s.slice(0, dot);
    var frac = dot < 0 ? "" : s.slice(dot);
    intPart = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (x < 0 ? "-" : "") + intPart + frac;
  }

  function attentionKind(qHeads, kvHeads) {
    if (kvHeads === qHeads) return "MHA：每个 Q 头一组 KV";
    if (kvHeads === 1) return "MQA：所有 Q 头共享一组 KV";
    return "GQA：每 " + qHeads / kvHeads + " 个 Q 头共享一组 KV";
  }

  // ---- 输入校验：每个字段的名字、类型与范围；出错时返回一句中文 ----

  var FIELDS = {
    kv: {
      layers: { label: "层数", integer: true, min: 1, max: 1000 },
      q_heads: { label: "Q 头数", integer: true, min: 1, max: 1024 },
      kv_heads: { label: "KV 头数", integer: true, min: 1, max: 1024 },
      head_dim: { label: "每头维度", integer: true, min: 1, max: 4096 },
      dtype: { label: "KV Cache 精度", choices: DTYPE_BYTES },
      tokens: { label: "上下文长度", integer: true, min: 1, max: 100000000 },
      batch: { label: "并发请求数", integer: true, min: 1, max: 1000000 },
    },
    spec: {
      alpha: { label: "接受率 α", min: 0, max: 1 },
      gamma: { label: "草稿长度 γ", integer: true, min: 0, max: 64 },
      c: { label: "草稿耗时比 c", min: 0, max: 100 },
    },
    cost: {
      gpu_hourly_usd: { label: "单卡每小时价格", min: 0, max: 1000000, exclusiveMin: true },
      num_gpus: { label: "GPU 数", integer: true, min: 1, max: 100000 },
      tokens_per_second: { label: "满载吞吐", min: 0, max: 1e12, exclusiveMin: true },
      utilization: { label: "利用率", min: 0, max: 1, exclusiveMin: true },
    },
  };

  function rangeText(spec) {
    var lo = formatNumber(spec.min, spec.integer ? 0 : countDecimals(spec.min));
    var hi = formatNumber(spec.max, spec.integer ? 0 : countDecimals(spec.max));
    if (spec.integer) return "需要 " + lo + " 到 " + hi + " 之间的整数";
    if (spec.exclusiveMin) return "需要大于 " + lo + "、不超过 " + hi + " 的数";
    return "需要 " + lo + " 到 " + hi + " 之间的数";
  }

  function countDecimals(x) {
    var s = String(x);
    var dot = s.indexOf(".");
    return dot < 0 ? 0 : s.length - dot - 1;
  }

  /** 把一个原始字符串按字段规格解析成数；不合法时抛出带中文说明的 Error。 */
  function parseField(spec, raw) {
    var text = raw === undefined || raw === null ? "" : String(raw).trim();
    if (spec.choices) {
      if (!Object.prototype.hasOwnProperty.call(spec.choices, text)) {
        throw new Error(spec.label + "：请从列表里选择");
      }
      return text;
    }
    if (text === "") throw new Error("请填写" + spec.label);
    var x = Number(text);
    if (!Number.isFinite(x)) throw new Error(spec.label + "：请输入数字");
    var bad =
      x < spec.min ||
      x > spec.max ||
      (spec.exclusiveMin && x === spec.min) ||
      (spec.integer && !Number.isInteger(x));
    if (bad) throw new Error(spec.label + "：" + rangeText(spec));
    return x;
  }

  var CALCULATORS = {
    kv: {
      check: function (v) {
        if (v.kv_heads > v.q_heads || v.q_heads % v.kv_heads !== 0) {
          return "Q 头数必须是 KV 头数的整数倍（GQA 分组）";
        }
        return null;
      },
      compute: function (v) {
        var perToken = kvBytesPerToken(v.layers, v.kv_heads, v.head_dim, v.dtype);
        var total = kvCacheBytes(v.layers, v.kv_heads, v.head_dim, v.tokens, v.batch, v.dtype);
        return { bytes_per_token: perToken, total_bytes: total };
      },
      format: function (r, v) {
        return {
          "per-token": formatNumber(r.bytes_per_token, 0) + " B（" + formatNumber(r.bytes_per_token / 1024, 2) + " KiB）",
          "total-gb": formatNumber(r.total_bytes / GB, 2) + " GB",
          "total-gib": formatNumber(r.total_bytes / GIB, 2) + " GiB",
          kind: attentionKind(v.q_heads, v.kv_heads),
        };
      },
    },
    spec: {
      check: function () {
        return null;
      },
      compute: function (v) {
        return {
          tokens_per_step: expectedTokensPerStep(v.alpha, v.gamma),
          speedup: expectedSpeedup(v.alpha, v.gamma, v.c),
        };
      },
      format: function (r) {
        return {
          "tokens-per-step": formatNumber(r.tokens_per_step, 2) + " 个",
          speedup: formatNumber(r.speedup, 2) + "×",
        };
      },
    },
    cost: {
      check: function () {
        return null;
      },
      compute: function (v) {
        return {
          usd_per_million: costPerMillionTokens(v.gpu_hourly_usd, v.tokens_per_second, v.num_gpus, v.utilization),
        };
      },
      format: function (r) {
        return { "usd-per-million": formatNumber(r.usd_per_million, 4) + " 美元" };
      },
    },
  };

  /**
   * 校验并计算一个计算器。raw 是 {name: 字符串或数}。
   * 返回 {ok: true, values, results, text} 或 {ok: false, field, error}。
   */
  function run(kind, raw) {
    var fields = FIELDS[kind];
    var calc = CALCULATORS[kind];
    if (!fields || !calc) throw new Error("未知的计算器 " + kind);
    var values = {};
    var names = Object.keys(fields);
    for (var i = 0; i < names.length; i++) {
      try {
        values[names[i]] = parseField(fields[names[i]], raw[names[i]]);
      } catch (err) {
        return { ok: false, field: names[i], error: err.message };
      }
    }
    var problem = calc.check(values);
    if (problem) return { ok: false, field: null, error: problem };
    var results = calc.compute(values);
    var finite = Object.keys(results).every(function (k) {
      return Number.isFinite(results[k]);
    });
    if (!finite) return { ok: false, field: null, error: "结果超出可计算的范围，请检查输入" };
    return { ok: true, values: values, results: results, text: calc.format(results, values) };
  }

  var api = {
    DTYPE_BYTES: DTYPE_BYTES,
    GB: GB,
    GIB: GIB,
    KV_PRESETS: KV_PRESETS,
    FIELDS: FIELDS,
    kvBytesPerToken: kvBytesPerToken,
    kvCacheBytes: kvCacheBytes,
    expectedTokensPerStep: expectedTokensPerStep,
    expectedSpeedup: expectedSpeedup,
    costPerMillionTokens: costPerMillionTokens,
    formatNumber: formatNumber,
    run: run,
  };

  // ---- 页面接线：只在浏览器里运行 ----

  function controls(form) {
    return Array.prototype.filter.call(form.querySelectorAll("input[name], select[name]"), function (el) {
      return el.name !== "preset";
    });
  }

  function update(form) {
    var kind = form.getAttribute("data-book-calc");
    var raw = {};
    controls(form).forEach(function (el) {
      raw[el.name] = el.value;
      el.removeAttribute("aria-invalid");
    });
    var result = run(kind, raw);
    var error = form.querySelector('[data-out="error"]');
    Array.prototype.forEach.call(form.querySelectorAll("[data-out]"), function (out) {
      var key = out.getAttribute("data-out");
      if (key !== "error") out.textContent = result.ok ? result.text[key] : "—";
    });
    if (error) {
      error.textContent = result.ok ? "" : result.error;
      error.hidden = result.ok;
    }
    form.classList.toggle("book-calc--invalid", !result.ok);
    if (!result.ok && result.field) {
      var bad = form.querySelector('[name="' + result.field + '"]');
      if (bad) bad.setAttribute("aria-invalid", "true");
    }
  }

  // KV 计算器的“模型”下拉框：选中一个预设就填入它的结构；手改任一结构字段后显示“自定义”。
  function wirePresets(form) {
    var select = form.querySelector('select[name="preset"]');
    if (!select) return;
    var keys = ["layers", "q_heads", "kv_heads", "head_dim"];
    select.addEventListener("change", function () {
      var preset = KV_PRESETS[select.value];
      if (!preset) return;
      keys.forEach(function (k) {
        var el = form.querySelector('[name="' + k + '"]');
        if (el) el.value = String(preset[k]);
      });
    });
    form.addEventListener("input", function (event) {
      if (keys.indexOf(event.target.name) < 0) return;
      var match = Object.keys(KV_PRESETS).filter(function (key) {
        return keys.every(function (k) {
          var el = form.querySelector('[name="' + k + '"]');
          return el && Number(el.value) === KV_PRESETS[key][k];
        });
      });
      select.value = match.length ? match[0] : "custom";
    });
  }

  function init(doc) {
    Array.prototype.forEach.call(doc.querySelectorAll("[data-book-calc]"), function (form) {
      if (form.getAttribute("data-book-calc-ready")) return;
      form.setAttribute("data-book-calc-ready", "true");
      wirePresets(form);
      var recompute = function () {
        update(form);
      };
      form.addEventListener("input", recompute);
      form.addEventListener("change", recompute);
      form.addEventListener("submit", function (event) {
        event.preventDefault();
      });
      // 默认值的结果已写在 HTML 里；浏览器“后退”时可能恢复别的输入值，所以计算器进入视口时再算一次。
      // 不在加载时算：那会强制整页重排，长页面在手机上要几百毫秒。
      whenVisible(form, function () {
        update(form);
      });
    });
  }

  function whenVisible(el, fn) {
    if (!("IntersectionObserver" in window)) return fn();
    var observer = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) {
        observer.disconnect();
        fn();
      }
    });
    observer.observe(el);
  }

  api.init = init;

  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.bookCalc = api;
    if (typeof document !== "undefined") {
      if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", function () {
          init(document);
        });
      } else {
        init(document);
      }
    }
  }
})(this);
