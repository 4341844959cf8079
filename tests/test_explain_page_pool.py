"""The explain page's pooling view and its animation controls in a real browser (headless
Chromium; the conv view's values, formulas and highlighting: ``test_explain_page.py``).

The pooling view's y, argmax and dx are compared with :mod:`rot180.functional` and
``torch.nn.functional`` (1-D and 2-D, per-axis windows, overlap, padding, dilation, ceil_mode,
count_include_pad, ties), its highlighting with the library's pooling Jacobian, its messages
with the library's; Play / Pause / Step / speed are driven with real clicks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest


def _set(browser, **settings) -> dict:
    browser.execute_script("window.rot180Page.set(arguments[0])", settings)
    return browser.execute_script("return window.rot180Page.dump()")



# ---- the pooling view: 1-D and 2-D, per axis, overlap, padding, dilation, ceil_mode ----

# (input, kernel, stride, padding, dilation); dilation is max pooling's only
POOL_GEOMETRIES = [
    ([5, 5], [3, 3], [2, 2], [1, 1], [1, 1]),   # overlapping, padded (the page's default)
    ([6, 5], [2, 3], [1, 2], [0, 1], [1, 1]),   # non-square everything
    ([7, 4], [3, 2], [2, 3], [1, 1], [2, 1]),   # dilated rows, stride larger than the window
    ([6, 7], [3, 3], [2, 2], [0, 1], [1, 1]),   # ceil_mode: a partial last window per axis
    ([5, 6], [2, 2], [2, 2], [1, 0], [1, 2]),   # non-overlapping rows, dilated cols
    ([4, 9], [1, 4], [1, 3], [0, 2], [1, 1]),
    ([7], [3], [2], [1], [1]),                  # 1-D
    ([8], [2], [3], [1], [3]),                  # 1-D dilated, remainder cells
    ([10], [4], [3], [2], [1]),                 # 1-D ceil partial window
    ([6], [5], [1], [2], [1]),                  # heavy overlap
]


def _pool_configs() -> list[dict]:
    out = []
    for inp, k, s, p, d in POOL_GEOMETRIES:
        for mode, ceil, cip in itertools.product(("max", "mean"), (False, True), (True, False)):
            if mode == "max" and not cip:
                continue   # count_include_pad is mean pooling's only
            out.append({"mode": mode, "nd": len(inp), "input": inp, "kernel": k, "stride": s,
                        "padding": p, "dilation": d if mode == "max" else [1] * len(inp),
                        "ceil": ceil, "countPad": cip})
    return out


POOL_CONFIGS = _pool_configs()


def _pool_library(call: dict, x: np.ndarray, dy: np.ndarray | None = None):
    """rot180.functional's y, argmax (None for mean) and δx for the page's call."""
    from rot180.functional import avg_pool, avg_pool_grad, max_pool, max_pool_grad

    args = tuple(tuple(call[k]) for k in ("kernel_size", "stride", "padding"))
    if call["op"] == "max_pool":
        y, arg = max_pool(x, *args, tuple(call["dilation"]), ceil_mode=call["ceil_mode"])
        dx = None if dy is None else max_pool_grad(dy, arg, x.shape, *args,
                                                   tuple(call["dilation"]),
                                                   ceil_mode=call["ceil_mode"])
        return y, arg, dx
    kw = dict(ceil_mode=call["ceil_mode"], count_include_pad=call["count_include_pad"])
    y = avg_pool(x, *args, **kw)
    return y, None, None if dy is None else avg_pool_grad(dy, x.shape, *args, **kw)


def _pool_torch(call: dict, x: np.ndarray, dy: np.ndarray):
    import torch
    import torch.nn.functional as tF

    nd = len(call["kernel_size"])
    tx = torch.tensor(x, requires_grad=True)
    args = [tuple(call[k]) for k in ("kernel_size", "stride", "padding")]
    if call["op"] == "max_pool":
        y, arg = getattr(tF, f"max_pool{nd}d")(tx, *args, tuple(call["dilation"]),
                                                ceil_mode=call["ceil_mode"], return_indices=True)
    else:
        y, arg = getattr(tF, f"avg_pool{nd}d")(tx, *args, ceil_mode=call["ceil_mode"],
                                                count_include_pad=call["count_include_pad"]), None
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), None if arg is None else arg.numpy(), tx.grad.numpy()


def test_pooling_view_equals_functional_and_torch(browser):
    """>= 30 pooling layers: the page's y, argmax and δx equal rot180.functional's max_pool /
    max_pool_grad / avg_pool / avg_pool_grad and torch.nn.functional's (autograd)."""
    seen = set()
    assert len(POOL_CONFIGS) >= 30
    for cfg in POOL_CONFIGS:
        got = browser.execute_script("return window.rot180Page.pool(arguments[0])", cfg)
        assert got["error"] is None, (cfg, got["error"])
        call = got["call"]
        x = np.array(got["x"], float).reshape(call["x_shape"])
        dy = np.array(got["dy"], float).reshape(1, 1, *got["o"])
        y, arg, dx = _pool_library(call, x, dy)
        ty, targ, tdx = _pool_torch(call, x, dy)
        assert y.shape[2:] == tuple(got["o"]) == ty.shape[2:], cfg
        assert got["y"] == pytest.approx(y.ravel().tolist(), rel=1e-12) == ty.ravel().tolist()
        assert got["dx"] == pytest.approx(dx.ravel().tolist(), rel=1e-12), cfg
        assert got["dx"] == pytest.approx(tdx.ravel().tolist(), rel=1e-12), cfg
        if arg is not None:   # the tie rule: the first maximum, as PyTorch
            assert got["arg"] == arg.ravel().tolist() == targ.ravel().tolist(), cfg
            assert got["y"] == y.ravel().tolist() and got["dx"] == dx.ravel().tolist()
            seen.add("tie" if _has_tie(call, x, got["o"]) else "no tie")
        span = [d * (k - 1) + 1 for k, d in zip(cfg["kernel"], cfg["dilation"], strict=True)]
        seen |= {f"nd{cfg['nd']}", cfg["mode"], f"cip{cfg['countPad']}"}
        seen |= {"overlap" for s, e in zip(cfg["stride"], span, strict=True) if s < e}
        seen |= {"padding" for p in cfg["padding"] if p}
        seen |= {"dilation" for d in cfg["dilation"] if d > 1}
        seen |= {"non-square"} if len(set(cfg["input"])) > 1 else set()
        if cfg["ceil"]:
            floor = _pool_library({**call, "ceil_mode": False}, x)[0].shape[2:]
            seen |= {"partial last window"} if floor != y.shape[2:] else set()
    assert seen >= {"nd1", "nd2", "max", "mean", "cipTrue", "cipFalse", "overlap", "padding",
                    "dilation", "non-square", "partial last window", "tie"}


def _has_tie(call: dict, x: np.ndarray, o: list[int]) -> bool:
    """Some window holds its maximum in two real cells (so the tie rule decides)."""
    k, s, p, d = (call[n] for n in ("kernel_size", "stride", "padding", "dilation"))
    plane = x.reshape(x.shape[2:])
    for q in itertools.product(*(range(n) for n in o)):
        vals = []
        for t in itertools.product(*(range(n) for n in k)):
            m = tuple(qa * sa - pa + ta * da for qa, sa, pa, ta, da in zip(q, s, p, t, d,
                                                                           strict=True))
            if all(0 <= u < n for u, n in zip(m, plane.shape, strict=True)):
                vals.append(plane[m])
        if vals.count(max(vals)) > 1:
            return True
    return False


@pytest.mark.parametrize("cfg", POOL_CONFIGS[::9], ids=lambda c: f"{c['mode']}-{c['nd']}d")
def test_pooling_pointing_lights_the_feeding_deltas(browser, cfg):
    """Pointing at a δx cell lights exactly the δy cells whose gradient reaches it: the
    nonzero entries of its column of the library's pooling Jacobian (one-hot δy through
    max_pool_grad / avg_pool_grad)."""
    got = browser.execute_script("return window.rot180Page.pool(arguments[0])", cfg)
    call = got["call"]
    x = np.array(got["x"], float).reshape(call["x_shape"])
    n_out = int(np.prod(got["o"]))
    jac = np.stack([_pool_library(call, x, np.eye(n_out)[q].reshape(1, 1, *got["o"]))[2].ravel()
                    for q in range(n_out)])
    for m in range(x.size):
        d = browser.execute_script("window.rot180Page.poolPoint('pdx', arguments[0]); "
                                   "return window.rot180Page.dump().pooling", m)
        lit = {c["i"] for c in d["cells"] if c["lit"] and c["p"] == "pdy"}
        assert lit == set(np.flatnonzero(jac[:, m]).tolist()), (cfg, m)
        assert d["formula"].endswith(f"= {_js_num(got['dx'][m])}")
    for q in range(n_out):   # and a y cell lights where its delta goes: the row of the Jacobian
        d = browser.execute_script("window.rot180Page.poolPoint('py', arguments[0]); "
                                   "return window.rot180Page.dump().pooling", q)
        lit = {c["i"] for c in d["cells"] if c["lit"] and c["p"] == "pdx"}
        assert lit == set(np.flatnonzero(jac[q]).tolist()), (cfg, q)


def _js_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(round(v * 1000) / 1000)


POOL_INVALID = [
    {"kernel": [3, 3], "padding": [2, 1]}, {"padding": [-1, 0]}, {"kernel": [0, 3]},
    {"stride": [2, 0]}, {"dilation": [0, 1]}, {"input": [2, 5], "kernel": [5, 3],
                                               "padding": [0, 1]},
    {"input": [4, 5], "kernel": [3, 3], "padding": [0, 0], "dilation": [2, 1]},
    {"input": [5, 3], "kernel": [3, 2], "padding": [1, 1], "dilation": [1, 4]},
    {"input": [0, 5]}, {"mode": "mean", "kernel": [2, 2], "padding": [1, 2]},
    {"mode": "mean", "input": [2, 5], "kernel": [5, 3], "padding": [1, 1]},
    {"nd": 1, "input": [3], "kernel": [4], "stride": [1], "padding": [0], "dilation": [1]},
    {"nd": 1, "input": [3], "kernel": [2], "stride": [1], "padding": [1], "dilation": [4]},
]


@pytest.mark.parametrize("bad", POOL_INVALID, ids=lambda b: ",".join(b))
def test_pooling_invalid_settings_show_the_library_message(browser, bad):
    base = {"mode": "max", "nd": 2, "input": [5, 5], "kernel": [3, 3], "stride": [2, 2],
            "padding": [1, 1], "dilation": [1, 1], "ceil": False, "countPad": True}
    got = browser.execute_script("return window.rot180Page.pool(arguments[0])", {**base, **bad})
    with pytest.raises(ValueError) as e:
        _pool_library(got["call"], np.zeros(got["call"]["x_shape"]))
    assert got["error"] == str(e.value)
    assert not browser.find_elements("css selector", "#poolview .cell")


def test_pooling_controls_real_events(browser):
    """Real clicks and keys on the pooling controls redraw the view on the new layer."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.execute_script("window.rot180Page.pool(arguments[0])",
                           {"mode": "max", "nd": 2, "input": [5, 5], "kernel": [3, 3],
                            "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1],
                            "ceil": False, "countPad": True})
    Select(browser.find_element(By.ID, "pmode")).select_by_value("mean")
    box = browser.find_element(By.ID, "pi1")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("6")
    browser.find_element(By.ID, "pceil").click()
    browser.find_element(By.ID, "pcip").click()
    got = browser.execute_script("return window.rot180Page.dump().pooling")
    assert (got["call"]["op"], got["settings"]["input"], got["call"]["ceil_mode"],
            got["call"]["count_include_pad"]) == ("avg_pool", [5, 6], True, False)
    assert got["o"] == [3, 4] and not browser.find_element(By.ID, "pd0").is_displayed()
    cell = browser.find_element(By.CSS_SELECTOR, '#poolview .cell[data-p="pdx"][data-i="0"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    cell.click()
    assert browser.find_element(By.ID, "pformula").text.startswith("δx11 = δy11/")


# ---- the animation: Play / Pause / Step / speed with real clicks ----

def _anim(browser) -> dict:
    return browser.execute_script("return window.rot180Page.dump().anim")


def _here(browser) -> list[tuple[str, int, int]]:
    """The pointed cell(s) of the layer view: (panel, channel, index)."""
    return [tuple(c) for c in browser.execute_script(
        "return [...document.querySelectorAll('#view .cell.here')]"
        ".map((e) => [e.dataset.p, +e.dataset.c, +e.dataset.i])")]


def test_play_pause_and_speed(browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _set(browser, nd=2, input=[3, 3], kernel=[2, 2], stride=[1, 1], dilation=[1, 1],
         padMode="sym", pad=[[0, 0], [0, 0]], cin=1, cout=1, groups=1, view="gather")
    speed = Select(browser.find_element(By.ID, "speed"))
    speed.select_by_value("1")
    assert _anim(browser)["interval_ms"] == 1200
    speed.select_by_value("4")
    assert _anim(browser) == {"on": False, "at": _anim(browser)["at"], "interval_ms": 300}
    play = browser.find_element(By.ID, "play")
    start = _anim(browser)["at"]
    play.click()
    assert play.text == "Pause" and _anim(browser)["on"]
    WebDriverWait(browser, 10, poll_frequency=0.05).until(
        lambda d: (_anim(d)["at"] - start) % 9 >= 2)   # it advances on its own
    play.click()
    assert play.text == "Play" and not _anim(browser)["on"]
    stopped = _anim(browser)["at"]
    assert _here(browser) == [("dx", 0, stopped)]
    # Stopped: no further steps over several intervals (polled, not one long sleep).
    with pytest.raises(TimeoutException):
        WebDriverWait(browser, 1.0, poll_frequency=0.1).until(
            lambda d: _anim(d)["at"] != stopped)
    assert _here(browser) == [("dx", 0, stopped)]
    play.click()   # a speed change while playing restarts the timer at the new interval
    speed.select_by_value("2")
    assert _anim(browser)["on"] and _anim(browser)["interval_ms"] == 600
    browser.find_element(By.ID, "step").click()   # Step pauses
    assert not _anim(browser)["on"] and play.text == "Play"
    speed.select_by_value("1")


@pytest.mark.parametrize("view,panel,n", [("gather", "dx", 3 * 4), ("scatter", "dz", 2 * 3)])
def test_step_moves_by_exactly_one(browser, view, panel, n):
    """Step moves the pointed cell by one, in row-major order over every channel, wrapping:
    δx cells in the gather view, δz cells in the scatter view (a 1-D two-channel layer)."""
    from selenium.webdriver.common.by import By

    _set(browser, nd=1, input=[4], kernel=[2], stride=[1], dilation=[1], padMode="sym",
         pad=[[0, 0]], cin=3, cout=2, groups=1, view=view)
    step = browser.find_element(By.ID, "step")
    n_per = n // (3 if panel == "dx" else 2)
    at = _anim(browser)["at"]
    for _ in range(n + 1):
        step.click()
        at = (at + 1) % n
        assert _anim(browser)["at"] == at
        assert _here(browser) == [(panel, at // n_per, at % n_per)]
