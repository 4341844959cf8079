// rot180 explain page: the index arithmetic of rot180.functional.shapes, and the drawing.
// Names as in shapes.py / docs/derivation.md, per spatial axis:
//   i input size, k kernel size, s stride, d dilation, (lo, hi) padding, span = d(k-1),
//   o = floor((i + lo + hi - d(k-1) - 1) / s) + 1, a = (i + lo + hi - d(k-1) - 1) mod s,
//   grad padding (low, high) = (d(k-1) - lo, d(k-1) - hi + a)      (grad_input_padding).
// Internally every map is 2-D: a 1-D layer is one row (H = 1). Public API: window.rot180Page
// (.set(settings), .get(), .dump(), .point(panel, channel, index), .step()).
"use strict";
(function () {
  const CFG = JSON.parse(document.getElementById("rot180-config").textContent);
  const PAL = CFG.palette, MSG = CFG.messages;
  for (const [k, v] of Object.entries({ in: PAL.input, out: PAL.output, ink: PAL.ink, pad: PAL.pad, delta: PAL.delta, rem: PAL.remainder }))
    document.documentElement.style.setProperty("--" + k, v);   // the palette comes from Python
  const $ = (tag, attrs, kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else if (k === "style") e.style.cssText = v;
      else e.setAttribute(k, v);
    }
    for (const c of kids || []) e.append(c);
    return e;
  };

  // ---- Python-like formatting (the messages and the code snippet are Python's) ----
  const pyRepr = (v) => Array.isArray(v)
    ? "(" + v.map(pyRepr).join(", ") + (v.length === 1 ? ",)" : ")")
    : typeof v === "string" ? "'" + v + "'" : String(v);
  const fill = (t, vals) => t.replace(/\{(\w+)\}/g, (m, k) => (k in vals ? String(vals[k]) : m));
  const perAxis = (arr, nd) => (nd === 1 || arr.every((v) => v === arr[0]) ? arr[0] : arr);

  // ---- settings ----
  const DEFAULT = { nd: 2, input: [3, 3], kernel: [2, 2], stride: [1, 1], dilation: [1, 1],
    padMode: "sym", pad: [[0, 0], [0, 0]], cin: 1, cout: 1, groups: 1,
    convention: "convolution", view: "gather", values: null };
  let S = JSON.parse(JSON.stringify(DEFAULT));

  function fromPython(p) {   // the opening layer from Python (page_html settings)
    const out = {};
    if (p.input) { out.input = p.input.slice(); out.nd = p.input.length; }
    const nd = out.nd || S.nd;
    const ax = (v) => (Array.isArray(v) ? v.slice() : Array(nd).fill(v));
    if (p.kernel) out.kernel = ax(p.kernel); else if (p.input) out.kernel = Array(nd).fill(2);
    if (p.stride !== undefined && p.stride !== null) out.stride = ax(p.stride);
    if (p.dilation !== undefined && p.dilation !== null) out.dilation = ax(p.dilation);
    const pd = p.padding;
    if (typeof pd === "string") { out.padMode = pd === "valid" ? "sym" : pd; out.pad = Array(nd).fill([0, 0]); }
    else if (Array.isArray(pd) && pd.some(Array.isArray)) {
      out.padMode = "sides"; out.pad = pd.map((v) => (Array.isArray(v) ? v.slice() : [v, v]));
    } else if (pd !== undefined && pd !== null) { out.padMode = "sym"; out.pad = ax(pd).map((v) => [v, v]); }
    if (p.channels) { out.cin = p.channels[0]; out.cout = p.channels[1]; }
    for (const k of ["groups", "convention"]) if (p[k] !== undefined && p[k] !== null) out[k] = p[k];
    return out;
  }

  // What rot180.functional is called with for these settings (shown in the code, and the
  // values the messages quote).
  function call(st) {
    const nd = st.nd, g = st.groups;
    const cig = g >= 1 ? Math.floor(st.cin / g) : st.cin;
    let padding;
    if (st.padMode === "same" || st.padMode === "full") padding = st.padMode;
    else if (st.padMode === "sides") padding = st.pad.map((p) => p.slice());
    else padding = perAxis(st.pad.map((p) => p[0]), nd);
    return { x_shape: [st.cin, ...st.input], w_shape: [st.cout, cig, ...st.kernel],
      stride: perAxis(st.stride, nd), padding, dilation: perAxis(st.dilation, nd), groups: g,
      flip: st.convention === "convolution" };
  }

  // The library's checks, in the library's order (weight_spec, resolve_padding,
  // input_shape_for); the words are the library's (webpage.py: messages()).
  function check(st) {
    const c = call(st), nd = st.nd, g = st.groups;
    if (st.kernel.some((k) => k < 1) || c.w_shape[1] < 1 || st.cout < 1)
      return fill(MSG.zero_weight, { w_shape: pyRepr(c.w_shape) });
    if (g < 1) return fill(MSG.groups_low, { groups: g });
    if (st.cout % g) return fill(MSG.groups_out, { groups: g, c_out: st.cout, w_shape: pyRepr(c.w_shape) });
    if (st.stride.some((v) => v < 1)) return fill(MSG.stride, { stride: pyRepr(c.stride), nd });
    if (st.dilation.some((v) => v < 1)) return fill(MSG.dilation, { dilation: pyRepr(c.dilation), nd });
    if (st.padMode === "same" && st.stride.some((v) => v !== 1))
      return fill(MSG.same_stride, { stride_t: pyRepr(st.stride) });
    if ((st.padMode === "sym" || st.padMode === "sides") && st.pad.some((p) => p[0] < 0 || p[1] < 0))
      return fill(MSG.negative_padding, { padding: pyRepr(c.padding) });
    if (st.cin % g) return fill(MSG.groups_in, { groups: g, c_in: st.cin, x_shape: pyRepr(c.x_shape) });
    if (st.input.some((v) => v < 1)) return fill(MSG.zero_input, { x_shape: pyRepr(c.x_shape) });
    const pads = resolvePadding(st);
    for (let ax = 0; ax < nd; ax++) {
      const i = st.input[ax], [lo, hi] = pads[ax], t = st.dilation[ax] * (st.kernel[ax] - 1);
      if (i + lo + hi < t + 1)
        return fill(MSG.extent, { ax, extent: t + 1, i, lo, hi, sum: i + lo + hi });
    }
    return null;
  }

  // shapes.resolve_padding: "same" puts the odd cell on the high side, "full" is d(k-1) each.
  function resolvePadding(st) {
    return st.kernel.map((k, ax) => {
      const span = st.dilation[ax] * (k - 1);
      if (st.padMode === "same") return [Math.floor(span / 2), span - Math.floor(span / 2)];
      if (st.padMode === "full") return [span, span];
      return st.pad[ax].slice();
    });
  }

  // ---- the layer: shapes, edges of the unrolled network, every derived value ----
  const prod = (a) => a.reduce((p, v) => p * v, 1);
  const two = (a, fillv) => (a.length === 1 ? [fillv, a[0]] : a.slice());   // (H, W)
  const cells = (hw) => { const out = []; for (let y = 0; y < hw[0]; y++) for (let x = 0; x < hw[1]; x++) out.push([y, x]); return out; };
  const flat = (c, hw) => c[0] * hw[1] + c[1];

  function sampleValues(L) {   // small integer example values, the same for the same shapes
    const f = (n, mod, off, seed) => Array.from({ length: n }, (_, t) => ((t * seed + 3) % mod) - off);
    return { x: f(L.cin * L.nI, 5, 2, 7), w: f(L.cout * L.cig * L.nK, 5, 2, 3),
      b: Array.from({ length: L.cout }, (_, j) => j + 1), dz: f(L.cout * L.nO, 4, 1, 5) };
  }

  function layer(st) {
    const nd = st.nd, pads = resolvePadding(st);
    const I = two(st.input, 1), K = two(st.kernel, 1), Sd = two(st.stride, 1), D = two(st.dilation, 1);
    const P = nd === 1 ? [[0, 0], pads[0]] : pads;
    const span = K.map((k, a) => D[a] * (k - 1));
    const O = I.map((i, a) => Math.floor((i + P[a][0] + P[a][1] - span[a] - 1) / Sd[a]) + 1);
    const A = I.map((i, a) => (i + P[a][0] + P[a][1] - span[a] - 1) % Sd[a]);   // stride remainder
    const GP = span.map((t, a) => [t - P[a][0], t - P[a][1] + A[a]]);            // grad_input_padding
    const PD = O.map((o, a) => (o - 1) * Sd[a] + 1 + GP[a][0] + GP[a][1]);       // padded delta size
    const g = st.groups, cig = st.cin / g, cog = st.cout / g;
    const L = { nd, I, K, S: Sd, D, P, O, A, GP, PD, span, g, cig, cog, cin: st.cin, cout: st.cout,
      conv: st.convention === "convolution", nI: prod(I), nK: prod(K), nO: prod(O) };
    const big = Math.max(st.cin * prod(I.map((i, a) => i + P[a][0] + P[a][1])), st.cout * prod(PD),
      st.cout * L.nO);
    if (big > CFG.maxCells) return { error: fill(MSG.too_big, { cells: big }) };
    const multi = !(st.cin === 1 && st.cout === 1);
    const idx = (c, hw) => { const v = nd === 1 ? [c[1]] : c, sz = nd === 1 ? [hw[1]] : hw;
      return v.map((u) => u + 1).join(Math.max(...sz) >= 10 ? "," : ""); };
    const chi = (v, sz) => v.map((u) => u + 1).join(Math.max(...sz) >= 10 ? "," : "");
    L.xName = (c, m) => "x" + (multi ? chi([c], [st.cin]) + "_" : "") + idx(m, I);
    L.dName = (j, q) => "δ" + (multi ? chi([j], [st.cout]) + "_" : "") + idx(q, O);
    L.wName = (j, c, t) => "w" + (multi ? chi([j, c], [st.cout, cig]) + "_" : "") + idx(t, K);
    L.rot = (t) => [K[0] - 1 - t[0], K[1] - 1 - t[1]];
    const sample = sampleValues(L), v = {};   // an edited array is kept while its length fits
    for (const key of Object.keys(sample))
      v[key] = st.values && st.values[key] && st.values[key].length === sample[key].length ? st.values[key] : sample[key];
    L.vals = v;
    L.xv = (c, m) => v.x[c * L.nI + flat(m, I)];
    L.wv = (j, c, t) => v.w[(j * cig + c) * L.nK + flat(t, K)];
    L.dv = (j, q) => v.dz[j * L.nO + flat(q, O)];
    // The unrolled network from the forward definition: output q of channel j reads padded cell
    // q*s + t*d through forward tap t; w_forward = w (correlation) or rot180(w) (convolution).
    const edges = [];
    for (let j = 0; j < st.cout; j++) for (const q of cells(O)) for (let c = 0; c < cig; c++) for (const t of cells(K)) {
      const m = [0, 1].map((a) => q[a] * Sd[a] + t[a] * D[a] - P[a][0]);
      if (m[0] >= 0 && m[0] < I[0] && m[1] >= 0 && m[1] < I[1])
        edges.push({ j, q, gc: Math.floor(j / cog) * cig + c, c, m, wt: L.conv ? L.rot(t) : t });
    }
    L.edges = edges;
    const zero = (n, sz) => Array.from({ length: n }, () => new Array(sz).fill(0));
    const terms = (n, sz) => Array.from({ length: n }, () => Array.from({ length: sz }, () => []));
    L.z = zero(st.cout, L.nO).map((r, j) => r.map(() => v.b[j])); L.zF = terms(st.cout, L.nO);
    L.dx = zero(st.cin, L.nI); L.dxF = terms(st.cin, L.nI);
    L.dw = zero(st.cout * cig, L.nK); L.dwF = terms(st.cout * cig, L.nK);
    for (const e of edges) {   // micrograd style: each edge's forward and backward together
      const w = L.wv(e.j, e.c, e.wt), qi = flat(e.q, O), mi = flat(e.m, I), ti = flat(e.wt, K);
      L.z[e.j][qi] += w * L.xv(e.gc, e.m); L.zF[e.j][qi].push(L.wName(e.j, e.c, e.wt) + "·" + L.xName(e.gc, e.m));
      L.dx[e.gc][mi] += L.dv(e.j, e.q) * w; L.dxF[e.gc][mi].push(L.dName(e.j, e.q) + "·" + L.wName(e.j, e.c, e.wt));
      const wi = e.j * cig + e.c;
      L.dw[wi][ti] += L.xv(e.gc, e.m) * L.dv(e.j, e.q); L.dwF[wi][ti].push(L.xName(e.gc, e.m) + "·" + L.dName(e.j, e.q));
    }
    L.db = Array.from({ length: st.cout }, (_, j) => cells(O).reduce((s, q) => s + L.dv(j, q), 0));
    // The rule: stretch dz by s, pad by GP, correlate (stride 1, dilation d) with rot180(w)
    // (correlation forward) or w itself (convolution forward).
    L.padded = (j, p) => {   // value at padded-delta cell p, and what kind of cell it is
      const r = [0, 1].map((a) => p[a] - GP[a][0]);
      const on = r.every((u, a) => u >= 0 && u % S_(a) === 0 && u / S_(a) < O[a]);
      if (on) return { v: L.dv(j, [r[0] / Sd[0], r[1] / Sd[1]]), kind: "delta", q: [r[0] / Sd[0], r[1] / Sd[1]] };
      const inStretch = r.every((u, a) => u >= 0 && u <= (O[a] - 1) * Sd[a]);
      const rem = r.some((u, a) => A[a] > 0 && u > (O[a] - 1) * Sd[a] + GP[a][1] - A[a]);
      return { v: 0, kind: inStretch ? "stretch" : rem ? "remainder" : "pad" };
    };
    const S_ = (a) => Sd[a];
    L.ruleK = (j, c, t) => (L.conv ? L.wv(j, c, t) : L.wv(j, c, L.rot(t)));
    L.ruleKName = (j, c, t) => (L.conv ? L.wName(j, c, t) : L.wName(j, c, L.rot(t)));
    L.rule = zero(st.cin, L.nI);
    for (let gc = 0; gc < st.cin; gc++) for (const m of cells(I)) {
      const grp = Math.floor(gc / cig), c = gc % cig;
      let sum = 0;
      for (let j = grp * cog; j < (grp + 1) * cog; j++) for (const t of cells(K))
        sum += L.ruleK(j, c, t) * L.padded(j, [m[0] + t[0] * D[0], m[1] + t[1] * D[1]]).v;
      L.rule[gc][flat(m, I)] = sum;
    }
    L.agree = L.rule.every((r, c) => r.every((u, m) => u === L.dx[c][m]));
    return L;
  }

  // ---- drawing ----
  let L = null, pointed = null, anim = { on: false, at: -1, timer: null };
  const fmt = (v) => (Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000));
  const formula = (t) => (t.length ? t.join(" + ") : "0");

  function grid(panel, ch, hw, label, role, cellFn) {
    const g = $("div", { class: "grid " + role, role: "grid", "aria-label": label,
      style: `grid-template-columns: repeat(${hw[1]}, var(--cell))` });
    cells(hw).forEach((p, n) => {
      const info = cellFn(p, n);
      const e = $("div", { class: "cell " + (info.kind || ""), role: "gridcell", tabindex: "-1",
        "data-p": panel, "data-c": ch, "data-i": n, "aria-label": info.aria || `${label} cell ${n + 1}: ${info.text}`,
        text: info.text });
      if (info.color) e.style.setProperty("--tap", info.color);
      e._info = info;
      g.append(e);
    });
    g.firstChild && (g.firstChild.tabIndex = 0);
    g.addEventListener("keydown", (ev) => {
      const cur = ev.target; if (!cur.classList.contains("cell")) return;
      const n = +cur.dataset.i, W = hw[1], H = hw[0];
      const to = { ArrowRight: n + 1, ArrowLeft: n - 1, ArrowDown: n + W, ArrowUp: n - W }[ev.key];
      if (to === undefined) return;
      ev.preventDefault();
      if ((ev.key === "ArrowRight" && n % W === W - 1) || (ev.key === "ArrowLeft" && n % W === 0) || to < 0 || to >= W * H) return;
      cur.tabIndex = -1; const nx = g.children[to]; nx.tabIndex = 0; nx.focus();
    });
    return g;
  }
  const box = (title, role, kids) => $("figure", { class: "panel " + role }, [$("figcaption", { text: title }), ...kids]);
  const showVal = () => document.getElementById("numbers").checked;

  function draw() {
    const view = document.getElementById("view"), err = document.getElementById("error");
    view.textContent = "";
    const msg = check(S);
    L = msg ? null : layer(S);
    const text = msg || (L && L.error);
    err.hidden = !text; err.textContent = text || "";
    if (text) { L = null; drawCode(); return; }
    const num = showVal(), K = L.K, I = L.I, O = L.O;
    const taps = (t) => PAL.taps[flat(t, K) % PAL.taps.length];
    const row1 = $("div", { class: "row" }), row2 = $("div", { class: "row" }), row3 = $("div", { class: "row" });
    for (let c = 0; c < L.cin; c++)
      row1.append(box(`x${L.cin > 1 ? " channel " + (c + 1) : ""} (input)`, "in", [grid("x", c, I, "x", "in",
        (m) => ({ text: num ? fmt(L.xv(c, m)) : L.xName(c, m), value: L.xv(c, m), formula: L.xName(c, m) }))]));
    for (let j = 0; j < L.cout; j++) for (let c = 0; c < L.cig; c++)
      row1.append(box(`w[${j + 1},${c + 1}] (kernel)`, "k", [grid("w", j * L.cig + c, K, "w", "k", (t) => ({
        text: num ? fmt(L.wv(j, c, t)) : L.wName(j, c, t), color: taps(t), kind: "tap", value: L.wv(j, c, t), formula: L.wName(j, c, t) }))]));
    for (let j = 0; j < L.cout; j++)
      row1.append(box(`z${L.cout > 1 ? " channel " + (j + 1) : ""} = ${L.conv ? "x ∗ w" : "x ⋆ w"} + b (output)`, "out", [grid("z", j, O, "z", "out", (q, n) => ({
        text: num ? fmt(L.z[j][n]) : "z" + L.dName(j, q).slice(1), value: L.z[j][n], formula: formula(L.zF[j][n]) }))]));
    view.append($("h2", { text: "Forward" }), row1);
    // backward: delta, padded delta with the rule kernel, the input gradient
    for (let j = 0; j < L.cout; j++)
      row2.append(box(`δz${L.cout > 1 ? " channel " + (j + 1) : ""} (output gradient)`, "out", [grid("dz", j, O, "δz", "out", (q) => ({
        text: num ? fmt(L.dv(j, q)) : L.dName(j, q), value: L.dv(j, q), formula: L.dName(j, q) }))]));
    if (S.view === "gather") {
      for (let j = 0; j < L.cout; j++)
        row2.append(box(`δz stretched by s, padded by (${L.GP.slice(2 - L.nd).map((p) => p.join(", ")).join(" | ")})`, "out", [grid("pd", j, L.PD, "padded δz", "out", (p) => {
          const c = L.padded(j, p);
          return { text: c.kind === "delta" ? (num ? fmt(c.v) : L.dName(j, c.q)) : "0", kind: c.kind, value: c.v, formula: c.kind === "delta" ? L.dName(j, c.q) : "0" };
        })]));
      for (let j = 0; j < L.cout; j++) for (let c = 0; c < L.cig; c++)
        row2.append(box(`${L.conv ? "w" : "rot180(w)"}[${j + 1},${c + 1}] slides`, "k", [grid("rk", j * L.cig + c, K, "rule kernel", "k", (t) => {
          const wt = L.conv ? t : L.rot(t);
          return { text: num ? fmt(L.wv(j, c, wt)) : L.wName(j, c, wt), color: taps(wt), kind: "tap", value: L.wv(j, c, wt), formula: L.wName(j, c, wt) };
        })]));
    }
    for (let c = 0; c < L.cin; c++)
      row2.append(box(`δx${L.cin > 1 ? " channel " + (c + 1) : ""} (input gradient)`, "in", [grid("dx", c, I, "δx", "in", (m, n) => ({
        text: num ? fmt(L.dx[c][n]) : "δx" + L.xName(c, m).slice(1), value: L.dx[c][n], formula: formula(L.dxF[c][n]), rule: L.rule[c][n] }))]));
    const how = S.view === "gather"
      ? `Gather (the rule): ${L.conv ? "w" : "rot180(w)"} slides over the stretched, padded δz (stride 1, dilation ${L.D.slice(2 - L.nd).join(",")}).`
      : "Scatter (the unrolled MLP): each δz cell paints its w window into δx; overlaps add up.";
    view.append($("h2", { text: "Backward" }), $("p", { class: "how", text: how + (L.agree ? " Scatter = gather in every cell ✓" : " MISMATCH") }), row2);
    for (let j = 0; j < L.cout; j++) for (let c = 0; c < L.cig; c++)
      row3.append(box(`δw[${j + 1},${c + 1}] (kernel gradient)`, "k", [grid("dw", j * L.cig + c, K, "δw", "k", (t, n) => ({
        text: num ? fmt(L.dw[j * L.cig + c][n]) : "δ" + L.wName(j, c, t), color: taps(t), kind: "tap", value: L.dw[j * L.cig + c][n], formula: formula(L.dwF[j * L.cig + c][n]) }))]));
    row3.append(box("δb (bias gradient) = Σ δz", "out", [grid("db", 0, [1, L.cout], "δb", "out", (p, n) => ({
      text: fmt(L.db[n]), value: L.db[n], formula: formula(cells(O).map((q) => L.dName(n, q))) }))]));
    view.append($("h2", { text: "Kernel and bias gradients" }), row3);
    const rem = L.A.slice(2 - L.nd);
    if (rem.some((v) => v > 0)) view.append($("p", { class: "remainder", text: `Stride remainder a = ${rem.join(", ")}: the last ${rem.join(", ")} input cell(s) per axis meet no window; the padded delta gets a extra cells at its high end (shaded).` }));
    drawMatrix(view, num);
    drawCode();
    if (pointed) point(pointed.p, pointed.c, pointed.i);
  }

  function drawMatrix(view, num) {
    const rows = L.cout * L.nO, cols = L.cin * L.nI;
    if (rows * cols > 1600) { view.append($("p", { text: `W is ${rows}×${cols}: too large to draw here.` })); return; }
    const W = Array.from({ length: rows }, () => new Array(cols).fill(null));
    for (const e of L.edges) W[e.j * L.nO + flat(e.q, L.O)][e.gc * L.nI + flat(e.m, L.I)] = e;
    const cell = (e) => (e ? { text: num ? fmt(L.wv(e.j, e.c, e.wt)) : L.wName(e.j, e.c, e.wt), color: PAL.taps[flat(e.wt, L.K) % PAL.taps.length], kind: "tap", value: L.wv(e.j, e.c, e.wt), formula: L.wName(e.j, e.c, e.wt) } : { text: "·", kind: "cut", value: 0, formula: "0" });
    view.append($("h2", { text: "The unrolled matrix: z = W x + b, δx = Wᵀ δz" }), $("div", { class: "row" }, [
      box(`W (${rows}×${cols}: rows z, columns x)`, "k", [grid("W", 0, [rows, cols], "W", "mat", (p) => cell(W[p[0]][p[1]]))]),
      box(`Wᵀ (${cols}×${rows}: rows δx, columns δz)`, "k", [grid("WT", 0, [cols, rows], "W transposed", "mat", (p) => cell(W[p[1]][p[0]]))])]));
  }

  // The code for these settings, runnable as it stands: the page's example values in the
  // layer's shapes, rot180.functional as the page calls it, and PyTorch's twin. torch.nn.grad
  // computes correlations with symmetric int padding only, so: a convolution forward hands
  // torch rot180(w) and rotates the weight gradient it returns back; uneven padding ("same"
  // with an odd span, per side, "full" is even) is written out: the input gradient of the
  // explicitly padded input (size i + lo + hi, padding=0) cropped to [lo : lo + i] per axis,
  // and the weight gradient of x padded by torch.nn.functional.pad.
  function drawCode() {
    const code = document.getElementById("code");
    if (!L) { code.textContent = "# No code: the settings above are invalid (see the message)."; return; }
    const c = call(S), nd = S.nd, sp = nd === 1 ? [2] : [2, 3], pads = resolvePadding(S);
    const arr = (name, vals, shape, note) => {   // np.array([...]) wrapped at ~90 columns
      const lines = [], head = `${name} = np.array([`;
      let cur = head;
      vals.map(String).forEach((t, n) => {
        const piece = t + (n < vals.length - 1 ? ", " : "");
        if (cur.length + piece.length > 90) { lines.push(cur.trimEnd()); cur = " ".repeat(head.length); }
        cur += piece;
      });
      lines.push(cur + `], dtype=float).reshape(${pyRepr(shape)})${note ? "   # " + note : ""}`);
      return lines.join("\n");
    };
    const xs = [1, ...c.x_shape], os = [1, S.cout, ...L.O.slice(2 - nd)];
    const kw = `stride=${pyRepr(c.stride)}, padding=${pyRepr(c.padding)}, dilation=${pyRepr(c.dilation)}, groups=${c.groups}`;
    const flip = c.flip ? ", flip=True" : "";
    const sym = pads.every((p) => p[0] === p[1]);
    const tkw = (padding) => `stride=${pyRepr(c.stride)}, padding=${padding}, dilation=${pyRepr(c.dilation)}, groups=${c.groups}`;
    const py = [
      `import numpy as np`, `import rot180.functional as F`, ``,
      `# The page's example values (tick "numbers" to see them), in the layer's shapes.`,
      arr("x", L.vals.x, xs, "(N, C_in, *i)"), arr("w", L.vals.w, c.w_shape, "(C_out, C_in / groups, *k)"),
      arr("b", L.vals.b, [S.cout]), arr("dz", L.vals.dz, os, "δz, (N, C_out, *o)"),
      `kw = dict(${kw})`,
      `z = F.conv(x, w, b${flip}, **kw)   # ${c.flip ? "convolution: z = x ∗ w + b" : "correlation: z = x ⋆ w + b"}`,
      `dx = F.conv_grad_input(dz, w, x.shape${flip}, **kw)   # δx: the rot180 rule`,
      `dw = F.conv_grad_weight(x, dz, w.shape${flip}, **kw)   # δw`,
      `db = dz.sum(axis=${pyRepr([0, ...sp])})   # δb`,
      `print("δx =", dx[0], "δw =", dw, "δb =", db, sep="\\n")`, ``,
      `# The same with PyTorch. torch.nn.grad computes correlations only${c.flip ? ": for a convolution" : "."}`,
      ...(c.flip ? [`# forward its kernel is rot180(w), and the weight gradient it returns is rotated back.`] : []),
      `import torch`,
      `tw = torch.from_numpy(${c.flip ? `np.flip(w, ${pyRepr(sp)}).copy()` : "w"})`, `tdz = torch.from_numpy(dz)`];
    if (sym) {
      const tp = pyRepr(perAxis(pads.map((p) => p[0]), nd));
      py.push(`tdx = torch.nn.grad.conv${nd}d_input(x.shape, tw, tdz, ${tkw(tp)})`,
        `tdw = torch.nn.grad.conv${nd}d_weight(torch.from_numpy(x), tw.shape, tdz, ${tkw(tp)})`);
    } else {
      const big = [...xs.slice(0, 2), ...S.input.map((i, a) => i + pads[a][0] + pads[a][1])];
      const crop = S.input.map((i, a) => `${pads[a][0]}:${pads[a][0] + i}`).join(", ");
      const tpad = pads.slice().reverse().map((p) => p.join(", ")).join(", ");
      py.push(`# padding (lo, hi) = ${pads.map((p) => "(" + p.join(", ") + ")").join(", ")} per axis is uneven and torch takes symmetric ints`,
        `# only: the input gradient of the padded input (i + lo + hi, padding=0), cropped to [lo : lo + i],`,
        `tdx = torch.nn.grad.conv${nd}d_input(${pyRepr(big)}, tw, tdz, ${tkw("0")})`, `tdx = tdx[:, :, ${crop}]`,
        `# and the weight gradient of x padded explicitly (torch's pad lists the last axis first).`,
        `tx = torch.nn.functional.pad(torch.from_numpy(x), (${tpad}))`,
        `tdw = torch.nn.grad.conv${nd}d_weight(tx, tw.shape, tdz, ${tkw("0")})`);
    }
    if (c.flip) py.push(`tdw = torch.flip(tdw, ${pyRepr(sp)})   # back to w's orientation`);
    py.push(`assert np.allclose(tdx.numpy(), dx) and np.allclose(tdw.numpy(), dw)`,
      `assert np.allclose(tdz.sum(${pyRepr([0, ...sp])}).numpy(), db)`, `print("PyTorch agrees: δx, δw and δb are the same")`);
    code.textContent = py.join("\n");
  }

  // ---- pointing: what feeds a cell, lit in every panel ----
  function point(p, c, i) {
    if (!L) return;
    pointed = { p, c, i };
    document.querySelectorAll(".cell.lit, .cell.here").forEach((e) => e.classList.remove("lit", "here"));
    const lit = (panel, ch, n) => { const e = document.querySelector(`.cell[data-p="${panel}"][data-c="${ch}"][data-i="${n}"]`); e && e.classList.add("lit"); };
    const here = document.querySelector(`.cell[data-p="${p}"][data-c="${c}"][data-i="${i}"]`);
    if (!here) return;
    here.classList.add("here");
    const K = L.K, O = L.O, I = L.I, info = here._info;
    let sel = [];
    if (p === "dx" || p === "WT") {
      const gc = p === "dx" ? c : Math.floor(i / (L.cout * L.nO) / L.nI), mi = p === "dx" ? i : Math.floor(i / (L.cout * L.nO)) % L.nI;
      sel = L.edges.filter((e) => e.gc === gc && flat(e.m, I) === mi);
      for (const e of sel) {
        lit("dz", e.j, flat(e.q, O)); lit("w", e.j * L.cig + e.c, flat(e.wt, K));
        lit("rk", e.j * L.cig + e.c, flat(L.conv ? e.wt : L.rot(e.wt), K));
        lit("pd", e.j, flat(e.q.map((q, a) => L.GP[a][0] + q * L.S[a]), L.PD));
        lit("WT", 0, (gc * L.nI + mi) * L.cout * L.nO + e.j * L.nO + flat(e.q, O));
      }
      lit("x", gc, mi);
    } else if (p === "z" || p === "W") {
      const j = p === "z" ? c : Math.floor(Math.floor(i / (L.cin * L.nI)) / L.nO), qi = p === "z" ? i : Math.floor(i / (L.cin * L.nI)) % L.nO;
      sel = L.edges.filter((e) => e.j === j && flat(e.q, O) === qi);
      for (const e of sel) { lit("x", e.gc, flat(e.m, I)); lit("w", e.j * L.cig + e.c, flat(e.wt, K));
        lit("W", 0, (j * L.nO + qi) * L.cin * L.nI + e.gc * L.nI + flat(e.m, I)); }
    } else if (p === "w" || p === "dw") {
      sel = L.edges.filter((e) => e.j * L.cig + e.c === c && flat(e.wt, K) === i);
      for (const e of sel) { lit("x", e.gc, flat(e.m, I)); lit("dz", e.j, flat(e.q, O)); }
      lit(p === "w" ? "dw" : "w", c, i);
    } else if (p === "dz") {
      sel = L.edges.filter((e) => e.j === c && flat(e.q, O) === i);
      for (const e of sel) { lit("dx", e.gc, flat(e.m, I)); lit("w", e.j * L.cig + e.c, flat(e.wt, K)); }
    }
    const out = document.getElementById("formula");
    const what = { dx: "δx cell = Σ δz·w over the edges it feeds", z: "z cell: its forward window", w: "kernel tap: its gradient is the correlation of x with δz", dw: "δw = correlation of x with δz" }[p] || "";
    const shown = p === "w" ? { formula: formula(L.dwF[c][i]), value: L.dw[c][i] } : info;
    out.textContent = `${what}\n${shown.formula} = ${fmt(shown.value)}`;
  }

  // ---- animation: the window sliding over the padded delta (gather) or δz painting (scatter) ----
  function step() {
    if (!L) return;
    if (S.view === "gather") { anim.at = (anim.at + 1) % (L.cin * L.nI); point("dx", Math.floor(anim.at / L.nI), anim.at % L.nI); }
    else { anim.at = (anim.at + 1) % (L.cout * L.nO); point("dz", Math.floor(anim.at / L.nO), anim.at % L.nO); }
  }
  const interval = () => 1200 / +document.getElementById("speed").value;   // ms per step
  function play(on) {
    anim.on = on; clearInterval(anim.timer);
    if (on) anim.timer = setInterval(step, interval());
    document.getElementById("play").textContent = on ? "Pause" : "Play";
  }

  // ---- controls ----
  function controls() {
    const root = document.getElementById("controls");
    const num = (id, label, v, min) => $("label", {}, [label + " ", $("input", { id, type: "number", value: v, min: String(min), step: "1", inputmode: "numeric" })]);
    const sel = (id, label, opts) => $("label", {}, [label + " ", $("select", { id }, opts.map(([v, t]) => $("option", { value: v, text: t })))]);
    root.append(
      sel("nd", "Layer", [["2", "2-D"], ["1", "1-D"]]),
      num("i0", "input rows", 3, 1), num("i1", "input cols / size", 3, 1),
      num("k0", "kernel rows", 2, 1), num("k1", "kernel cols / size", 2, 1),
      num("s0", "stride rows", 1, 1), num("s1", "stride cols", 1, 1),
      num("d0", "dilation rows", 1, 1), num("d1", "dilation cols", 1, 1),
      sel("padMode", "padding", [["sym", "symmetric"], ["sides", "per side"], ["same", "same"], ["full", "full"]]),
      num("p0", "pad rows (low)", 0, 0), num("q0", "pad rows high", 0, 0), num("p1", "pad cols (low)", 0, 0), num("q1", "pad cols high", 0, 0),
      num("cin", "C_in", 1, 1), num("cout", "C_out", 1, 1), num("groups", "groups", 1, 1),
      sel("convention", "forward", [["convolution", "convolution z = x ∗ w"], ["correlation", "correlation z = x ⋆ w"]]),
      sel("viewmode", "backward as", [["gather", "gather: rot180(w) slides over padded δz"], ["scatter", "scatter: each δz paints w"]]),
      $("label", {}, [$("input", { id: "numbers", type: "checkbox" }), " numbers"]),
      $("button", { id: "play", type: "button", text: "Play" }), $("button", { id: "step", type: "button", text: "Step" }),
      sel("speed", "speed", [["1", "1×"], ["2", "2×"], ["4", "4×"]]),
      $("button", { id: "checker", type: "button", text: "Checkerboard: stride 2, 3×3, constant δz" }),
      $("details", {}, [$("summary", { text: "Edit the example values" }),
        ...["x", "w", "b", "dz"].map((k) => $("label", { class: "vals" }, [k + " ", $("input", { id: "v_" + k, type: "text" })]))]),
      $("pre", { id: "formula", "aria-live": "polite", text: "Point at a cell." }),
      $("details", {}, [$("summary", { text: "Code for these settings" }), $("pre", { id: "code" })]));
    root.addEventListener("input", readControls);
    root.addEventListener("change", readControls);
    document.getElementById("play").onclick = () => play(!anim.on);
    document.getElementById("step").onclick = () => { play(false); step(); };
    document.getElementById("checker").onclick = () => {
      api.set({ nd: 2, input: [7, 7], kernel: [3, 3], stride: [2, 2], dilation: [1, 1], padMode: "sym", pad: [[0, 0], [0, 0]], cin: 1, cout: 1, groups: 1, values: null });
      const L0 = layer(S); S.values = { ...L0.vals, w: L0.vals.w.map(() => 1), dz: L0.vals.dz.map(() => 1) };
      document.getElementById("numbers").checked = true; writeControls(); draw();
    };
    const view = document.getElementById("view");
    const handler = (ev) => { const e = ev.target.closest && ev.target.closest(".cell"); if (e) point(e.dataset.p, +e.dataset.c, +e.dataset.i); };
    view.addEventListener("mouseover", handler); view.addEventListener("click", handler); view.addEventListener("focusin", handler);
  }

  const int = (id, name) => { const t = document.getElementById(id).value.trim(); if (!/^-?\d+$/.test(t)) throw fill(MSG.not_int, { name, text: t }); return parseInt(t, 10); };
  function readControls(ev) {
    if (ev && ev.target && ["speed"].includes(ev.target.id)) { if (anim.on) play(true); return; }
    try {
      const nd = +document.getElementById("nd").value, ax = nd === 1 ? [1] : [0, 1];
      const st = { ...S, nd, input: ax.map((a) => int("i" + a, "input size")), kernel: ax.map((a) => int("k" + a, "kernel size")),
        stride: ax.map((a) => int("s" + a, "stride")), dilation: ax.map((a) => int("d" + a, "dilation")),
        padMode: document.getElementById("padMode").value, cin: int("cin", "C_in"), cout: int("cout", "C_out"), groups: int("groups", "groups"),
        convention: document.getElementById("convention").value, view: document.getElementById("viewmode").value };
      st.pad = ax.map((a) => { const lo = int("p" + a, "padding"); return [lo, st.padMode === "sides" ? int("q" + a, "padding") : lo]; });
      if (ev && ev.target && ev.target.id && ev.target.id.startsWith("v_")) {
        const parse = (k) => document.getElementById("v_" + k).value.split(",").map((t) => Number(t.trim()));
        const v = { x: parse("x"), w: parse("w"), b: parse("b"), dz: parse("dz") };
        if (Object.values(v).every((a) => a.every(Number.isFinite))) st.values = v;
      }
      if (L && JSON.stringify(st) === JSON.stringify(S)) return;   // a change event repeating an input
      S = st;
      document.body.dataset.nd = nd; document.body.dataset.pad = S.padMode;
      draw(); writeValues();
    } catch (msg) {
      if (typeof msg !== "string") throw msg;
      L = null; document.getElementById("view").textContent = "";
      const err = document.getElementById("error"); err.hidden = false; err.textContent = msg;
    }
  }
  function writeControls() {
    const set = (id, v) => { document.getElementById(id).value = String(v); };
    set("nd", S.nd); const o = S.nd === 1 ? 1 : 0;
    S.input.forEach((v, a) => set("i" + (a + o), v)); S.kernel.forEach((v, a) => set("k" + (a + o), v));
    S.stride.forEach((v, a) => set("s" + (a + o), v)); S.dilation.forEach((v, a) => set("d" + (a + o), v));
    S.pad.forEach((p, a) => { set("p" + (a + o), p[0]); set("q" + (a + o), p[1]); });
    set("padMode", S.padMode); set("cin", S.cin); set("cout", S.cout); set("groups", S.groups);
    set("convention", S.convention); set("viewmode", S.view);
    document.body.dataset.nd = S.nd; document.body.dataset.pad = S.padMode;
  }
  function writeValues() {
    if (!L) return;
    for (const k of ["x", "w", "b", "dz"]) { const e = document.getElementById("v_" + k); if (document.activeElement !== e) e.value = L.vals[k].join(", "); }
  }

  // ---- pooling view: _page/pool.js (window.rot180Pool), drawn with these helpers ----
  const POOL = window.rot180Pool({ $, grid, box, fmt, fill, pyRepr, prod, two, MSG,
    maxCells: CFG.maxCells });

  function fit(st) {   // per-axis settings of the wrong length (a 2-D default on a 1-D layer)
    const def = { input: 3, kernel: 2, stride: 1, dilation: 1 };
    for (const [k, v] of Object.entries(def)) if (st[k].length !== st.nd) st[k] = Array(st.nd).fill(st[k][0] || v);
    if (st.pad.length !== st.nd) st.pad = Array(st.nd).fill(st.pad[0] || [0, 0]);
    return st;
  }

  // ---- the documented API (tests, and anyone scripting the page) ----
  const api = {
    /** Change settings (keys of the state: nd, input, kernel, stride, dilation, padMode, pad,
     *  cin, cout, groups, convention, view, values) and redraw. */
    set(obj) { pointed = null; S = fit({ ...S, ...obj });
      if (!("values" in obj)) S.values = null;
      if ("numbers" in obj) document.getElementById("numbers").checked = !!obj.numbers;
      writeControls(); draw(); writeValues(); return api.get(); },
    get() { return { ...JSON.parse(JSON.stringify(S)), call: call(S) }; },
    point, step,
    /** The pooling view: change its settings (pool.js), point at one of its cells. */
    pool: (obj) => POOL.set(obj), poolPoint: (panel, index) => POOL.point(panel, index),
    /** Every drawn cell: panel, channel, index, text, value, formula, lit, kind. */
    dump() {
      return { settings: api.get(), error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
        layer: L && { O: L.O.slice(2 - L.nd), A: L.A.slice(2 - L.nd), GP: L.GP.slice(2 - L.nd), agree: L.agree, values: L.vals },
        cells: [...document.querySelectorAll("#view .cell")].map((e) => ({ p: e.dataset.p, c: +e.dataset.c, i: +e.dataset.i,
          text: e.textContent, value: e._info.value, formula: e._info.formula, rule: e._info.rule, kind: e._info.kind || "", lit: e.classList.contains("lit") })),
        formula: document.getElementById("formula").textContent,
        code: document.getElementById("code").textContent,
        anim: { on: anim.on, at: anim.at, interval_ms: interval() },
        pooling: POOL.dump() };
    },
  };
  window.rot180Page = api;
  controls(); POOL.build(document.getElementById("pooling"), int);
  S = fit({ ...S, ...fromPython(CFG.settings) });
  writeControls(); draw(); writeValues();
})();
