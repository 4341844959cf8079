"""The interactive page (``rot180 explain --html``) in a real browser: headless Chromium.

Every value the page computes in JS is compared with :mod:`rot180.functional` (forward, input,
kernel and bias gradients, pooling), its formulas with the SymPy derivation, its highlighting
with the unrolled matrix's nonzero pattern (:func:`rot180.functional.reference.conv_matrix`),
its error messages with the library's own. The copied code is run (rot180 and torch) and must
reproduce the page's cells (the pooling view and Play / Pause / Step / speed:
``test_explain_page_pool.py``). Settings are
changed through the page's documented API (``window.rot180Page``) for the sweeps and through
real key and mouse events elsewhere.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from rot180.explain import page, write_page
from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight
from rot180.functional.reference import conv_matrix

SHOTS = Path(__file__).resolve().parent.parent / "build" / "explain-page"


def _tup(v):
    return tuple(_tup(u) for u in v) if isinstance(v, list) else v


def _kwargs(call: dict) -> dict:
    return {k: _tup(call[k]) for k in ("stride", "padding", "dilation", "groups")}


def _set(browser, **settings) -> dict:
    browser.execute_script("window.rot180Page.set(arguments[0])", settings)
    return browser.execute_script("return window.rot180Page.dump()")


def _panel(dump: dict, name: str, field: str = "value") -> dict:
    return {(c["c"], c["i"]): c[field] for c in dump["cells"] if c["p"] == name}


def _configs() -> list[dict]:
    out = []
    for nd, s, d, pad, conv_, ch in itertools.product(
            (1, 2), (1, 2, 3), (1, 2, 3), ("int", "sides", "same", "full"),
            ("correlation", "convolution"), ((1, 1), (2, 2, 2), (2, 1))):
        if pad == "same" and s != 1:
            continue
        n = 7 if nd == 2 else 9
        inp = [n - (s > 1)] * nd if nd == 1 else [5, 6 - (d > 1)]
        k = [3] * nd if nd == 1 else [2, 3]
        pads = {"int": [[1, 1]] * nd, "sides": [[0, 2], [1, 0]][:nd], "same": [[0, 0]] * nd,
                "full": [[0, 0]] * nd}[pad]
        cfg = {"nd": nd, "input": inp, "kernel": k, "stride": [s] * nd if nd == 1 else [s, 1],
               "dilation": [d] * nd, "padMode": "sides" if pad == "sides" else
               ("sym" if pad == "int" else pad), "pad": pads, "cin": ch[0], "cout": ch[1],
               "groups": ch[2] if len(ch) == 3 else 1, "convention": conv_}
        padding = pad if pad in ("same", "full") else (
            tuple(map(tuple, pads)) if pad == "sides" else 1)
        try:   # only layers the library accepts (the invalid ones have their own test)
            conv(np.zeros((cfg["cin"], *inp)),
                 np.zeros((cfg["cout"], cfg["cin"] // cfg["groups"], *k)),
                 stride=tuple(cfg["stride"]), dilation=d, padding=padding, groups=cfg["groups"])
        except ValueError:
            continue
        out.append(cfg)
    return out


CONFIGS = _configs()


def _library(dump: dict):
    st, vals = dump["settings"], dump["layer"]["values"]
    call = st["call"]
    kw, flip = _kwargs(call), call["flip"]
    x = np.array(vals["x"], float).reshape(call["x_shape"])
    w = np.array(vals["w"], float).reshape(call["w_shape"])
    b = np.array(vals["b"], float)
    z = conv(x, w, b, flip=flip, **kw)
    dz = np.array(vals["dz"], float).reshape(z.shape)
    return (z, conv_grad_input(dz, w, x.shape, flip=flip, **kw),
            conv_grad_weight(x, dz, w.shape, flip=flip, **kw), conv_grad_bias(dz[None]), w, kw)


def _flat(a: np.ndarray, lead: int) -> dict:
    a = a.reshape(int(np.prod(a.shape[:lead])), -1)
    return {(c, i): a[c, i] for c in range(a.shape[0]) for i in range(a.shape[1])}


def test_sweep_values_equal_functional(browser):
    """>= 100 layers: every z, δx, δw, δb cell the page shows equals rot180.functional, the
    rule (gather) equals the chain rule (scatter) in every δx cell, and W is conv_matrix."""
    assert len(CONFIGS) >= 100
    remainders = matrices = 0
    for cfg in CONFIGS:
        dump = _set(browser, **cfg, numbers=True)
        assert dump["error"] is None, (cfg, dump["error"])
        z, dx, dw, db, w, kw = _library(dump)
        flip = dump["settings"]["call"]["flip"]
        remainders += any(dump["layer"]["A"])
        assert _panel(dump, "z") == pytest.approx(_flat(z, 1)), cfg
        assert _panel(dump, "dx") == pytest.approx(_flat(dx, 1)), cfg
        assert _panel(dump, "dx", "rule") == pytest.approx(_flat(dx, 1)), cfg
        assert _panel(dump, "dw") == pytest.approx(_flat(dw, 2)), cfg
        assert [v for _, v in sorted(_panel(dump, "db").items())] == pytest.approx(list(db))
        assert dump["layer"]["agree"]
        mat = _panel(dump, "W")
        if mat:   # drawn up to 1600 entries: the unrolled matrix of the reference
            m = conv_matrix(w, tuple(dump["settings"]["call"]["x_shape"]), flip=flip, **kw)
            assert [mat[(0, n)] for n in range(m.size)] == pytest.approx(m.ravel().tolist())
            matrices += 1
    assert remainders >= 20 and matrices >= 50   # non-zero stride remainders are well covered


def _terms(text: str) -> set[frozenset]:
    return set() if text == "0" else {frozenset(t.split("·")) for t in text.split(" + ")}


def _sym_terms(expr) -> set[frozenset]:
    import sympy as sp

    return set() if expr == 0 else {
        frozenset(str(s) for s in term.free_symbols) for term in sp.Add.make_args(expr)}


def _renamed(terms: set[frozenset], gi: int, cig: int, cog: int) -> set[frozenset]:
    """Symbols of one group's derivation (channels counted within the group) renamed to the
    whole layer's channels: x and δ by the group's offset, w by its output channel."""
    def one(name: str) -> str:
        if m := re.fullmatch(r"w(\d)(\d)_(.*)", name):
            return f"w{gi * cog + int(m[1])}{m[2]}_{m[3]}"
        m = re.fullmatch(r"(x|δ)(\d)_(.*)", name)
        return f"{m[1]}{gi * (cig if m[1] == 'x' else cog) + int(m[2])}_{m[3]}"
    return {frozenset(one(n) for n in t) for t in terms}


@pytest.mark.parametrize("cfg", CONFIGS[::8], ids=lambda c: f"{c['nd']}d-{c['padMode']}")
def test_formulas_equal_sympy(browser, cfg):
    """Every δx, δw and z formula equals the SymPy derivation, in the chosen convention (a
    subset: SymPy is slow). A grouped layer is one derivation per group, renamed."""
    from rot180.explain import derive_input_gradient, derive_weight_gradient

    dump = _set(browser, **cfg, numbers=False)
    call = dump["settings"]["call"]
    g = cfg["groups"]
    cig, cog = cfg["cin"] // g, cfg["cout"] // g
    ch = None if (cfg["cin"], cfg["cout"]) == (1, 1) else (cig, cog)
    args = dict(stride=_tup(call["stride"]), padding=_tup(call["padding"]),
                dilation=_tup(call["dilation"]), convention=cfg["convention"], channels=ch)
    d = derive_input_gradient(tuple(cfg["input"]), tuple(cfg["kernel"]), **args)
    dwd = derive_weight_gradient(tuple(cfg["input"]), tuple(cfg["kernel"]), **args)
    for name, arr, lead, per in (("dx", d.arrays["delta_in"], 1, cig),
                                 ("z", d.arrays["z"], 1, cog),
                                 ("dw", dwd.arrays["delta_w"], 2, cog * cig)):
        page_f = _panel(dump, name, "formula")
        assert len(page_f) == g * arr.size
        for gi in range(g):
            for (c, i), expr in _flat(arr, lead).items():
                want = _sym_terms(expr)
                want = _renamed(want, gi, cig, cog) if ch is not None else want
                got = _terms(page_f[(gi * per + c, i)])
                assert got == want, (name, gi, c, i, page_f[(gi * per + c, i)], expr)


HIGHLIGHT = [CONFIGS[n] for n in (0, 7, 31, 58, 77, 101, len(CONFIGS) - 1)]


@pytest.mark.parametrize("cfg", HIGHLIGHT, ids=lambda c: f"{c['nd']}d-s{c['stride']}")
def test_highlight_matches_unrolled_matrix(browser, cfg):
    """Pointing at a δx cell lights exactly the δz cells and kernel taps of the nonzero
    entries of its column of W (a kernel of distinct values tells the taps apart), and the
    same entries of its row of Wᵀ."""
    dump = _set(browser, **cfg, numbers=True)
    call = dump["settings"]["call"]
    wshape = call["w_shape"]
    ids = np.arange(1, np.prod(wshape) + 1, dtype=float).reshape(wshape)
    m = conv_matrix(ids, tuple(call["x_shape"]), flip=call["flip"], **_kwargs(call))
    n_out = m.shape[0] // wshape[0]
    n_k = int(np.prod(wshape[2:]))
    for col in range(0, m.shape[1], max(1, m.shape[1] // 12)):
        n_in = m.shape[1] // call["x_shape"][0]
        browser.execute_script("window.rot180Page.point('dx', arguments[0], arguments[1])",
                               col // n_in, col % n_in)
        lit = browser.execute_script("return window.rot180Page.dump()")["cells"]
        got_dz = {(c["c"], c["i"]) for c in lit if c["lit"] and c["p"] == "dz"}
        got_w = {(c["c"], c["i"]) for c in lit if c["lit"] and c["p"] == "w"}
        got_wt = {c["i"] for c in lit if c["lit"] and c["p"] == "WT"}
        rows = np.flatnonzero(m[:, col])
        taps = (m[rows, col].astype(int) - 1)
        assert got_dz == {(r // n_out, r % n_out) for r in rows}
        assert got_w == {(t // n_k, t % n_k) for t in taps}
        if any(c["p"] == "WT" for c in lit):
            assert got_wt == {col * m.shape[0] + r for r in rows}


INVALID = [
    {"stride": [0, 1]}, {"dilation": [0, 0]}, {"padMode": "same", "stride": [2, 1]},
    {"padMode": "sym", "pad": [[-1, -1], [0, 0]]}, {"groups": 2, "cin": 2, "cout": 3},
    {"groups": 2, "cin": 3, "cout": 2}, {"groups": 0}, {"kernel": [9, 2]},
    {"input": [0, 3]}, {"groups": 3, "cin": 2, "cout": 3},
]


@pytest.mark.parametrize("bad", INVALID, ids=lambda b: ",".join(b))
def test_invalid_settings_show_the_library_message(browser, bad):
    base = {"nd": 2, "input": [4, 4], "kernel": [2, 2], "stride": [1, 1], "dilation": [1, 1],
            "padMode": "sym", "pad": [[0, 0], [0, 0]], "cin": 1, "cout": 1, "groups": 1}
    dump = _set(browser, **{**base, **bad})
    call = dump["settings"]["call"]
    with pytest.raises((ValueError, TypeError)) as e:
        conv(np.zeros(call["x_shape"]), np.zeros(call["w_shape"]), **_kwargs(call))
    assert dump["error"] == str(e.value)
    assert _panel(dump, "dx") == {}


def test_keyboard_mouse_and_controls(browser):
    """Real events: typing in a control redraws; a click points at a cell; arrow keys move
    the focus along the cells (roving tabindex) with a visible focus ring."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    _set(browser, nd=2, input=[3, 3], kernel=[2, 2], stride=[1, 1], dilation=[1, 1],
         padMode="sym", pad=[[0, 0], [0, 0]], cin=1, cout=1, groups=1,
         convention="convolution", numbers=False)
    Select(browser.find_element(By.ID, "convention")).select_by_value("convolution")
    box = browser.find_element(By.ID, "s1")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("2")
    assert browser.execute_script("return window.rot180Page.get().stride") == [1, 2]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("1")
    first = browser.find_element(By.CSS_SELECTOR, '.cell[data-p="dx"][data-i="0"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
    ActionChains(browser).move_to_element(first).click().perform()
    assert "δ11·w22 = " in browser.find_element(By.ID, "formula").text
    first.send_keys(Keys.ARROW_RIGHT)
    active = browser.switch_to.active_element
    assert (active.get_attribute("data-p"), active.get_attribute("data-i")) == ("dx", "1")
    assert "δ11·w21 + δ12·w22" in browser.find_element(By.ID, "formula").text
    outline = browser.execute_script(
        "const s = getComputedStyle(document.activeElement); "
        "return [s.outlineStyle, s.outlineWidth]")
    assert outline[0] != "none" and float(outline[1].rstrip("px")) >= 2
    active.send_keys(Keys.ARROW_DOWN)
    assert browser.switch_to.active_element.get_attribute("data-i") == "4"
    lit = [c for c in browser.execute_script("return window.rot180Page.dump().cells")
           if c["lit"] and c["p"] == "dz"]
    assert len(lit) == 4   # the centre of a 3x3 input feeds all four outputs


def test_checkerboard_and_remainder(browser):
    """The preset: a constant δz through a stride-2 3x3 kernel of ones overlaps unevenly."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "checker").click()
    dx = browser.execute_script("return window.rot180Page.dump()")
    grid = np.array([v for _, v in sorted(_panel(dx, "dx").items())]).reshape(7, 7)
    assert grid[0, :3].tolist() == [1, 1, 2] and grid[2, 2] == 4 and grid[1, 1] == 1
    _set(browser, nd=1, input=[8], kernel=[3], stride=[2], dilation=[1], padMode="sym",
         pad=[[0, 0]], cin=1, cout=1, groups=1)
    assert browser.execute_script("return window.rot180Page.dump().layer.A") == [1]
    assert browser.find_elements(By.CSS_SELECTOR, ".cell.remainder")
    assert browser.find_element(By.CSS_SELECTOR, "p.remainder").is_displayed()


def test_step_animation_and_scatter_switch(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _set(browser, nd=2, input=[3, 3], kernel=[2, 2], stride=[1, 1], dilation=[1, 1],
         padMode="sym", pad=[[0, 0], [0, 0]], cin=1, cout=1, groups=1, view="gather")
    browser.find_element(By.ID, "step").click()
    browser.find_element(By.ID, "step").click()
    here = browser.find_elements(By.CSS_SELECTOR, ".cell.here")
    assert [(e.get_attribute("data-p"), e.get_attribute("data-i")) for e in here] == [("dx", "1")]
    Select(browser.find_element(By.ID, "viewmode")).select_by_value("scatter")
    d = browser.execute_script("return window.rot180Page.dump()")
    assert d["settings"]["view"] == "scatter" and d["layer"]["agree"]
    assert not [c for c in d["cells"] if c["p"] == "pd"]
    browser.find_element(By.ID, "step").click()
    here = browser.find_elements(By.CSS_SELECTOR, ".cell.here")
    assert here[0].get_attribute("data-p") == "dz"


def test_screenshots(browser, html_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(html_path.as_uri())
    browser.execute_script("window.rot180Page.set({nd: 2, input: [5, 5], kernel: [3, 3], "
                           "stride: [2, 2], padMode: 'sym', pad: [[1, 1], [1, 1]], "
                           "convention: 'correlation', numbers: false})")
    browser.execute_script("window.rot180Page.point('dx', 0, 6)")
    for name, (w, h) in (("desktop", (1280, 900)), ("phone", (390, 844))):
        browser.set_window_size(w, h)
        browser.execute_script("document.querySelector('#view h2').scrollIntoView()")
        path = SHOTS / f"explain-page-{name}.png"
        assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
    browser.set_window_size(1280, 900)
    browser.execute_script("window.rot180Page.pool({mode: 'max', nd: 2, input: [5, 6], "
                           "kernel: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], "
                           "ceil: true, countPad: true}); window.rot180Page.poolPoint('pdx', 3);"
                           "document.querySelector('#pooling h2').scrollIntoView()")
    path = SHOTS / "explain-page-pooling.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_file_is_self_contained(html_path, tmp_path):
    text = html_path.read_text(encoding="utf-8")
    assert len(text.encode()) < 300_000
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", text)
    assert "https://" not in text and "http://" not in text
    assert '"maxCells": 400' in text   # the limits and messages come from Python
    assert write_page(html_path) == html_path   # same content: left alone
    other = tmp_path / "mine.html"
    other.write_text("a student's notes")
    with pytest.raises(ValueError, match="exists and differs"):
        write_page(other)
    assert other.read_text() == "a student's notes"
    write_page(other, overwrite=True)
    assert other.read_text() == text
    assert "<iframe srcdoc=" in page(input=[5])._repr_html_()


def test_cli_html(tmp_path):
    from rot180.cli import main

    out = tmp_path / "e.html"
    assert main(["explain", "--html", str(out), "--input", "5", "--kernel", "3",
                 "--stride", "2", "--padding", "1:0"]) == 0
    text = out.read_text(encoding="utf-8")
    assert '"settings": {"input": [5], "kernel": [3], "stride": 2, "padding": [[1, 0]]}' in text
    assert main(["explain", "--html", str(out), "--input", "6"]) != 0
    assert main(["explain", "--html", str(out), "--input", "6", "--overwrite"]) == 0


def test_docs_copy_is_current():
    """docs/explain.html is what ``rot180 explain --html`` writes today."""
    from rot180.explain.webpage import page_html

    docs = Path(__file__).resolve().parent.parent / "docs" / "explain.html"
    assert docs.read_text(encoding="utf-8") == page_html({}), \
        "regenerate: rot180 explain --html docs/explain.html --overwrite"


def test_edited_values_recompute(browser):
    """Numbers mode: values typed into the x and δz boxes (real keys) flow through every panel
    and still equal rot180.functional."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _set(browser, nd=1, input=[5], kernel=[3], stride=[2], dilation=[1], padMode="sides",
         pad=[[1, 0]], cin=1, cout=1, groups=1, convention="correlation", numbers=True)
    browser.find_element(By.CSS_SELECTOR, "#controls details summary").click()
    for box, text in (("v_x", "3, -1, 4, 1, -5"), ("v_dz", "2, -3")):
        e = browser.find_element(By.ID, box)
        e.send_keys(Keys.CONTROL, "a")
        e.send_keys(text)
    dump = browser.execute_script("return window.rot180Page.dump()")
    assert dump["layer"]["values"]["x"] == [3, -1, 4, 1, -5]
    assert dump["layer"]["values"]["dz"] == [2, -3]
    z, dx, dw, db, _, _ = _library(dump)
    assert _panel(dump, "dx") == pytest.approx(_flat(dx, 1))
    assert _panel(dump, "dw") == pytest.approx(_flat(dw, 2))
    assert _panel(dump, "z") == pytest.approx(_flat(z, 1))


def test_cli_page_opens_on_the_layer(browser, tmp_path):
    """The options of ``rot180 explain --html`` choose the layer the page opens on."""
    from rot180.cli import main

    out = tmp_path / "layer.html"
    assert main(["explain", "--html", str(out), "--input", "5", "--kernel", "3", "--stride",
                 "2", "--padding", "1:0", "--convention", "correlation"]) == 0
    browser.get(out.as_uri())
    dump = browser.execute_script("return window.rot180Page.dump()")
    st = dump["settings"]
    assert (st["nd"], st["input"], st["kernel"], st["stride"], st["padMode"], st["pad"],
            st["convention"]) == (1, [5], [3], [2], "sides", [[1, 0]], "correlation")
    assert dump["layer"]["O"] == [2] and dump["layer"]["A"] == [1]


# ---- the copied code: runnable, and it reproduces the page's numbers ----

CODE_CONFIGS = CONFIGS[::13]


def test_code_snippet_reproduces_the_page(browser, capsys):
    """For every padding form, stride 1-3 with remainders, dilation, groups, 1-D and 2-D and
    both conventions: the page's code runs as it stands (exec of our own generated text), and
    its rot180 and torch results equal the δx, δw, δb cells the page shows, exactly."""
    seen = set()
    for cfg in CODE_CONFIGS:
        dump = _set(browser, **cfg, numbers=True)
        code = browser.find_element("id", "code").get_attribute("textContent")
        assert code == dump["code"] and "np.ones" not in code
        ns: dict = {}
        exec(compile(code, "<explain page code>", "exec"), ns)   # noqa: S102 - the page's own text
        assert "PyTorch agrees" in capsys.readouterr().out
        for page_name, ours, theirs, lead in (("dx", ns["dx"][0], ns["tdx"].numpy()[0], 1),
                                             ("dw", ns["dw"], ns["tdw"].numpy(), 2)):
            shown = _panel(dump, page_name)
            assert shown == _flat(ours, lead) == _flat(theirs, lead), (cfg, page_name)
        assert [v for _, v in sorted(_panel(dump, "db").items())] == ns["db"].tolist()
        assert _panel(dump, "z") == _flat(ns["z"][0], 1)
        seen |= {("pad", cfg["padMode"]), ("conv", cfg["convention"]), ("nd", cfg["nd"]),
                 ("s", max(cfg["stride"])), ("d>1", max(cfg["dilation"]) > 1),
                 ("groups>1", cfg["groups"] > 1), ("rem", any(dump["layer"]["A"]))}
        seen.add(("torch pads x", "torch.nn.functional.pad" in code))
    assert len(CODE_CONFIGS) >= 20
    assert seen >= {("pad", p) for p in ("sym", "sides", "same", "full")} | {
        ("conv", "correlation"), ("conv", "convolution"), ("nd", 1), ("nd", 2), ("s", 1),
        ("s", 2), ("s", 3), ("d>1", True), ("groups>1", True), ("rem", True),
        ("torch pads x", True), ("torch pads x", False)}


def test_code_for_invalid_settings_says_so(browser):
    dump = _set(browser, nd=2, input=[4, 4], kernel=[2, 2], stride=[0, 1], dilation=[1, 1],
                padMode="sym", pad=[[0, 0], [0, 0]], cin=1, cout=1, groups=1)
    assert dump["error"] and dump["code"].startswith("# No code")
