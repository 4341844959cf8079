// rot180 explain page, the pooling view: max routes δ to the remembered argmax, mean spreads
// δ/c over the window. The arithmetic of rot180.functional._poolspec, names as there, per axis:
//   i input, k window, s stride, p padding (both sides, p <= k // 2), d dilation (max only),
//   span e = d(k-1) + 1, o = floor((i + 2p - e) / s) + 1, or with ceil_mode
//   o = ceil((i + 2p - e) / s) + 1, minus one when (o-1)s >= i + p (the last window must start
//   inside the input or its low padding: shapes.pool_output_size). The ceil form is PyTorch's
//   floor((i + 2p - d(k-1) - 1 + (s-1)) / s) + 1 with the same last-window rule.
// Window q reads input cells q*s - p + t*d (t = 0..k-1); padding cells are -inf (max: never
// chosen) or 0 (mean). Ties: the first maximum in row-major window order wins (strict >).
// Mean divides by c(q) = prod over axes of (hi - lo), lo = q*s - p, hi = min(lo + k, i + p),
// with count_include_pad=False clipped to the input: lo = max(lo, 0), hi = min(hi, i).
// Loaded before page.js, which calls window.rot180Pool with its drawing helpers.
"use strict";
window.rot180Pool = function (H) {
  const { $, grid, box, fmt, fill, pyRepr, prod, two, MSG, maxCells } = H;
  const DEFAULT = { mode: "max", nd: 2, input: [5, 5], kernel: [3, 3], stride: [2, 2],
    padding: [1, 1], dilation: [1, 1], ceil: false, countPad: true };
  let PS = JSON.parse(JSON.stringify(DEFAULT)), PL = null;

  // What rot180.functional.max_pool / avg_pool is called with (x of shape (1, 1, *i)).
  function call(P) {
    const c = { op: P.mode === "max" ? "max_pool" : "avg_pool", x_shape: [1, 1, ...P.input],
      kernel_size: P.kernel.slice(), stride: P.stride.slice(), padding: P.padding.slice(),
      ceil_mode: P.ceil };
    if (P.mode === "max") c.dilation = P.dilation.slice(); else c.count_include_pad = P.countPad;
    return c;
  }
  function outSize(i, e, s, p, ceil) {   // shapes.pool_output_size
    if (!ceil) return Math.floor((i + 2 * p - e) / s) + 1;
    const o = Math.ceil((i + 2 * p - e) / s) + 1;
    return (o - 1) * s >= i + p ? o - 1 : o;
  }
  // _poolspec.pool_spec's checks, in its order, with its words (webpage.py: pool_messages()).
  function check(P) {
    const c = call(P), nd = P.nd, op = c.op, d = P.mode === "max" ? P.dilation : P.input.map(() => 1);
    if (P.input.some((v) => v < 1)) return fill(MSG.pool_zero_input, { op, x_shape: pyRepr(c.x_shape) });
    for (const [name, v] of [["kernel_size", P.kernel], ["stride", P.stride], ...(P.mode === "max" ? [["dilation", d]] : [])])
      if (v.some((u) => u < 1)) return fill(MSG.pool_positive, { name, value: pyRepr(v), nd });
    if (P.padding.some((p, a) => p < 0 || p > Math.floor(P.kernel[a] / 2)))
      return fill(MSG.pool_padding, { op, pads: pyRepr(P.padding), ks: pyRepr(P.kernel) });
    for (let ax = 0; ax < nd; ax++) {
      const [i, k, s, p] = [P.input[ax], P.kernel[ax], P.stride[ax], P.padding[ax]], span = d[ax] * (k - 1) + 1;
      if (outSize(i, span, s, p, P.ceil) < 1)
        return fill(d[ax] === 1 ? MSG.pool_larger : MSG.pool_larger_dilated, { op, ax, k, d: d[ax], span, i, p });
    }
    for (let ax = 0; ax < nd; ax++) {   // PoolSpec.first_real: a window of padding only
      const [i, k, s, p] = [P.input[ax], P.kernel[ax], P.stride[ax], P.padding[ax]], dd = d[ax];
      const o = outSize(i, dd * (k - 1) + 1, s, p, P.ceil);
      for (let q = 0; q < o; q++) {
        const lo = q * s - p, first = lo + Math.floor(Math.max(dd - 1 - lo, 0) / dd) * dd;
        if (first >= i) return fill(MSG.pool_empty, { op, q, ax, k, d: dd, p, i });
      }
    }
    return null;
  }

  function layer(P) {
    const msg = check(P);
    if (msg) return { error: msg };
    if (prod(P.input) > maxCells) return { error: fill(MSG.too_big, { cells: prod(P.input) }) };
    const I = two(P.input, 1), K = two(P.kernel, 1), S = two(P.stride, 1), Pd = two(P.padding, 0);
    const D = P.mode === "max" ? two(P.dilation, 1) : [1, 1];
    const O = I.map((i, a) => outSize(i, D[a] * (K[a] - 1) + 1, S[a], Pd[a], P.ceil));
    const nI = prod(I), nO = prod(O);
    const x = P.x && P.x.length === nI ? P.x : Array.from({ length: nI }, (_, t) => [1, 3, 2, 3, 0, 2, 5, 1, 4][(t * 7) % 9]);
    const dy = P.dy && P.dy.length === nO ? P.dy : Array.from({ length: nO }, (_, t) => t + 1);
    const count = (a, q) => {   // _poolspec.divisor along one axis
      let lo = q * S[a] - Pd[a], hi = Math.min(lo + K[a], I[a] + Pd[a]);
      if (!P.countPad) { lo = Math.max(lo, 0); hi = Math.min(hi, I[a]); }
      return hi - lo;
    };
    const y = [], arg = [], div = [], win = [], dx = new Array(nI).fill(0);
    for (let q0 = 0; q0 < O[0]; q0++) for (let q1 = 0; q1 < O[1]; q1++) {
      const cellsIn = [];   // the real input cells of window q, in row-major tap order
      for (let t0 = 0; t0 < K[0]; t0++) for (let t1 = 0; t1 < K[1]; t1++) {
        const m0 = q0 * S[0] - Pd[0] + t0 * D[0], m1 = q1 * S[1] - Pd[1] + t1 * D[1];
        if (m0 >= 0 && m0 < I[0] && m1 >= 0 && m1 < I[1]) cellsIn.push(m0 * I[1] + m1);
      }
      const q = q0 * O[1] + q1;
      win.push(cellsIn);
      if (P.mode === "max") {
        let best = -Infinity, at = -1;
        for (const m of cellsIn) if (x[m] > best) { best = x[m]; at = m; }   // strict >: first maximum
        y.push(best); arg.push(at); div.push(1); dx[at] += dy[q];
      } else {
        const c = count(0, q0) * count(1, q1);
        y.push(cellsIn.reduce((u, m) => u + x[m], 0) / c); div.push(c);
        for (const m of cellsIn) dx[m] += dy[q] / c;
      }
    }
    return { I, O, x, dy, y, arg, div, win, dx, mode: P.mode, nd: P.nd };
  }

  // ---- drawing ----
  const name = (v, n, hw, nd) => {   // 1-based, row then column (one index in 1-D)
    const c = nd === 1 ? [n] : [Math.floor(n / hw[1]), n % hw[1]];
    return v + c.map((u) => u + 1).join(Math.max(...hw) >= 10 ? "," : "");
  };
  function draw() {
    PL = layer(PS);
    const out = document.getElementById("poolview"), f = document.getElementById("pformula");
    out.textContent = ""; f.textContent = "Point at a cell.";
    const sec = document.getElementById("pooling");
    sec.dataset.nd = PS.nd; sec.dataset.mode = PS.mode;
    if (PL.error) { out.append($("p", { class: "perror", role: "alert", text: PL.error })); return; }
    const P = PL, max = P.mode === "max";
    const c = (arr, kind) => (m, n) => ({ text: fmt(arr[n]), value: arr[n], kind: kind ? kind(n) : "" });
    out.append(
      box("x (input)", "in", [grid("px", 0, P.I, "pool x", "in", c(P.x, (n) => (max && P.arg.includes(n) ? "argmax" : "")))]),
      box(`y = ${P.mode} pool (output)`, "out", [grid("py", 0, P.O, "pool y", "out", c(P.y))]),
      box("δy (output gradient)", "out", [grid("pdy", 0, P.O, "pool δy", "out", c(P.dy))]),
      box(max ? "δx: each δy goes to its argmax (ties: the first maximum)" : "δx: each δy spread as δ/c over its window", "in",
        [grid("pdx", 0, P.I, "pool δx", "in", c(P.dx))]));
    const o = P.O.slice(2 - P.nd).join(" × ");
    out.append($("p", { class: "how", text: `y is ${o}: o = ${PS.ceil ? "ceil" : "floor"}((i + 2p − d(k−1) − 1) / s) + 1 per axis` +
      (PS.ceil ? " (ceil_mode: a last window may run past the padded input; it must start inside the input or its low padding)." : ".") +
      (max ? "" : ` c = cells counted per window (${PS.countPad ? "padding included" : "input cells only"}): ${[...new Set(P.div)].join(", ")}.`) }));
  }

  // Pointing: a δx cell lights the δy (and y) cells that feed it; a y / δy cell its window.
  function point(p, i) {
    if (!PL || PL.error) return;
    const root = document.getElementById("poolview");
    root.querySelectorAll(".cell.lit, .cell.here").forEach((e) => e.classList.remove("lit", "here"));
    const at = (panel, n) => root.querySelector(`.cell[data-p="${panel}"][data-i="${n}"]`);
    const here = at(p, i);
    if (!here) return;
    here.classList.add("here");
    const P = PL, max = P.mode === "max", lit = (panel, n) => { const e = at(panel, n); e && e.classList.add("lit"); };
    const dyName = (q) => name("δy", q, P.O, P.nd), f = document.getElementById("pformula");
    if (p === "pdx" || p === "px") {
      const qs = P.win.map((w, q) => q).filter((q) => (p === "px" || !max ? P.win[q].includes(i) : P.arg[q] === i));
      for (const q of qs) { lit("pdy", q); lit("py", q); }
      lit(p === "pdx" ? "px" : "pdx", i);
      const terms = qs.map((q) => (max ? dyName(q) : `${dyName(q)}/${P.div[q]}`));
      f.textContent = p === "pdx" ? `${name("δx", i, P.I, P.nd)} = ${terms.join(" + ") || "0"} = ${fmt(P.dx[i])}`
        : `${name("x", i, P.I, P.nd)} lies in the windows of ${qs.map((q) => name("y", q, P.O, P.nd)).join(", ") || "no output"}`;
    } else {
      for (const m of P.win[i]) lit("px", m);
      for (const m of max ? [P.arg[i]] : P.win[i]) lit("pdx", m);
      lit(p === "py" ? "pdy" : "py", i);
      f.textContent = max ? `${name("y", i, P.O, P.nd)} = max of its window = ${name("x", P.arg[i], P.I, P.nd)} = ${fmt(P.y[i])}; its δ goes there`
        : `${name("y", i, P.O, P.nd)} = (sum of its window) / ${P.div[i]} = ${fmt(P.y[i])}; δ/${P.div[i]} to each cell`;
    }
  }

  // ---- controls ----
  function build(root, int) {
    root.append($("h2", { text: "Pooling: the upsample rule" }));
    const n = (id, label, v, min) => $("label", {}, [label + " ", $("input", { id, type: "number", value: v, min: String(min), step: "1", inputmode: "numeric" })]);
    const ctl = $("div", { class: "row", id: "poolctl" });
    ctl.append(
      $("label", {}, ["mode ", $("select", { id: "pmode" }, [$("option", { value: "max", text: "max" }), $("option", { value: "mean", text: "mean" })])]),
      $("label", {}, ["layer ", $("select", { id: "pnd" }, [$("option", { value: "2", text: "2-D" }), $("option", { value: "1", text: "1-D" })])]),
      n("pi0", "input rows", 5, 1), n("pi1", "input cols / size", 5, 1), n("pk0", "window rows", 3, 1), n("pk1", "window cols / size", 3, 1),
      n("ps0", "stride rows", 2, 1), n("ps1", "stride cols", 2, 1), n("pp0", "padding rows", 1, 0), n("pp1", "padding cols", 1, 0),
      n("pd0", "dilation rows", 1, 1), n("pd1", "dilation cols", 1, 1),
      $("label", {}, [$("input", { id: "pceil", type: "checkbox" }), " ceil_mode"]),
      $("label", {}, [$("input", { id: "pcip", type: "checkbox", checked: "" }), " count_include_pad"]));
    const out = $("div", { class: "row", id: "poolview" });
    root.append(ctl, $("pre", { id: "pformula", "aria-live": "polite", text: "Point at a cell." }), out);
    const read = () => {
      try {
        const nd = +document.getElementById("pnd").value, ax = nd === 1 ? [1] : [0, 1];
        const v = (p, what) => ax.map((a) => int(p + a, what));
        PS = { ...PS, mode: document.getElementById("pmode").value, nd, input: v("pi", "input size"), kernel: v("pk", "window size"),
          stride: v("ps", "stride"), padding: v("pp", "padding"), dilation: v("pd", "dilation"),
          ceil: document.getElementById("pceil").checked, countPad: document.getElementById("pcip").checked };
        draw();
      } catch (msg) {
        if (typeof msg !== "string") throw msg;
        PL = { error: msg }; const o = document.getElementById("poolview"); o.textContent = "";
        o.append($("p", { class: "perror", role: "alert", text: msg }));
      }
    };
    ctl.addEventListener("input", read); ctl.addEventListener("change", read);
    const handler = (ev) => { const e = ev.target.closest && ev.target.closest(".cell"); if (e) point(e.dataset.p, +e.dataset.i); };
    for (const t of ["mouseover", "click", "focusin"]) out.addEventListener(t, handler);
    draw();
  }
  function writeControls() {
    const set = (id, v) => { document.getElementById(id).value = String(v); }, o = PS.nd === 1 ? 1 : 0;
    set("pmode", PS.mode); set("pnd", PS.nd);
    for (const [p, arr] of [["pi", PS.input], ["pk", PS.kernel], ["ps", PS.stride], ["pp", PS.padding], ["pd", PS.dilation]])
      arr.forEach((v, a) => set(p + (a + o), v));
    document.getElementById("pceil").checked = PS.ceil; document.getElementById("pcip").checked = PS.countPad;
  }

  return {
    /** Change the pooling settings (mode, nd, input, kernel, stride, padding, dilation, ceil,
     *  countPad, x, dy) and redraw; per-axis lists of the wrong length are repeated. */
    set(obj) {
      const st = { ...PS, ...obj };
      for (const k of ["input", "kernel", "stride", "padding", "dilation"])
        if (st[k].length !== st.nd) st[k] = Array(st.nd).fill(st[k][0]);
      if (!("x" in obj)) delete st.x;
      if (!("dy" in obj)) delete st.dy;
      PS = st; writeControls(); draw(); return this.dump();
    },
    point,
    build,
    /** The pooling view: settings, the library call, values, and every drawn cell. */
    dump() {
      const cellsOut = [...document.querySelectorAll("#poolview .cell")].map((e) => ({ p: e.dataset.p, i: +e.dataset.i,
        value: e._info.value, kind: e._info.kind || "", lit: e.classList.contains("lit"), here: e.classList.contains("here") }));
      const base = { settings: JSON.parse(JSON.stringify(PS)), call: call(PS), formula: document.getElementById("pformula").textContent };
      if (!PL || PL.error) return { ...base, error: PL ? PL.error : null };
      return { ...base, error: null, x: PL.x, y: PL.y, arg: PL.arg, dy: PL.dy, dx: PL.dx, div: PL.div,
        o: PL.O.slice(2 - PL.nd), cells: cellsOut };
    },
  };
};
