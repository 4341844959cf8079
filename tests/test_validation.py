"""The argument checks: one module for every package, and the array-namespace seam.

Every array enters rot180 through :func:`rot180.functional._array.as_array`, which today takes
NumPy arrays only and says so; every scalar, flag, option, shape and generator check is one
function of :mod:`rot180.functional._validation`. The first half checks what a user sees (a
foreign array refused with a clear ``TypeError`` by a function, a layer, ``Parameter`` and an
optimizer; NumPy subclasses as before), the second that no package grew its own copy again.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import rot180
import rot180.functional as F
from rot180 import nn
from rot180.functional import _validation as V
from rot180.optim import SGD, Adam

SRC = Path(rot180.__file__).parent
FOREIGN = r"must be a numpy array, got {}: rot180 computes with NumPy"


class ArrayLike:
    """Not an ndarray, but numpy could convert it (``__array__``): refused, not converted."""

    def __array__(self, dtype=None, copy=None):
        return np.ones((1, 2, 5, 5), dtype or np.float32)


def foreign_inputs() -> list:
    out = [pytest.param(ArrayLike(), r"test_validation\.ArrayLike", id="__array__"),
           pytest.param(memoryview(np.ones(4)), "memoryview", id="memoryview")]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is the test oracle, installed with the tests
        return out
    return out + [pytest.param(torch.ones(1, 2, 5, 5), "torch.Tensor", id="torch")]


# -- the seam ---------------------------------------------------------------------------------

def test_the_namespace_table_holds_numpy_only() -> None:
    assert V.NAMESPACES == [(np.ndarray, np)]
    assert V.array_namespace(np.zeros(2)) is np
    assert V.array_namespace(np.ma.array([1.0])) is np        # a subclass is numpy's
    assert V.array_namespace([1.0]) is None
    assert V.array_namespace(ArrayLike()) is None


@pytest.mark.parametrize(("a", "kind"), foreign_inputs())
def test_a_foreign_array_is_refused_by_conv(a, kind) -> None:
    with pytest.raises(TypeError, match=rf"^x {FOREIGN.format(kind)} .* Convert it with "
                                        r"np\.asarray\(x, dtype=np\.float32\)"):
        F.conv(a, np.ones((3, 2, 3, 3), np.float32))


@pytest.mark.parametrize(("a", "kind"), [*foreign_inputs(),
                                         pytest.param([[1.0] * 5] * 5, "list", id="list")])
def test_a_layer_refuses_anything_but_an_ndarray(a, kind) -> None:
    layer = nn.Conv2d(2, 3, 3, rng=0)
    with pytest.raises(TypeError, match=rf"^Conv2d: x must be a numpy array, got {kind}"):
        layer.forward(a)
    layer.forward(np.ones((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match=rf"^Conv2d\.backward: dy must be a numpy array, got "
                                        rf"{kind}"):
        layer.backward(a)


@pytest.mark.parametrize(("a", "kind"), [*foreign_inputs(),
                                         pytest.param([1.0, 2.0], "list", id="list")])
def test_parameter_refuses_anything_but_an_ndarray(a, kind) -> None:
    with pytest.raises(TypeError, match=rf"^Parameter: data must be a numpy array, got {kind}"):
        nn.Parameter(a)


@pytest.mark.parametrize(("a", "kind"), [*foreign_inputs(),
                                         pytest.param([1.0, 2.0], "list", id="list")])
def test_an_optimizer_refuses_a_foreign_gradient(a, kind) -> None:
    p = nn.Parameter(np.zeros(2))
    p.grad = a
    with pytest.raises(TypeError, match=rf"^SGD: the gradient of Parameter\(shape=\(2,\), "
                                        rf"dtype=float64\) must be a numpy array, got {kind}"):
        SGD([p], lr=0.1).step()


def test_an_optimizer_refuses_foreign_loaded_state() -> None:
    torch = pytest.importorskip("torch")
    p = nn.Parameter(np.zeros(2))
    opt = Adam([p])
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^Adam: state 'exp_avg' of parameter 0 must be a numpy "
                                        r"array, got torch\.Tensor: rot180 computes with NumPy"):
        Adam([p]).load_state_dict(sd)
    sd["state"][0]["exp_avg"] = [0.0, 0.0]                    # a JSON round trip: still taken
    Adam([p]).load_state_dict(sd)


def test_the_functional_api_still_takes_lists_and_scalars() -> None:
    np.testing.assert_array_equal(F.relu([[-1.0, 2.0]]), [[0.0, 2.0]])
    assert F.conv([[[1.0, 2.0, 3.0]]], np.ones((1, 1, 2))).tolist() == [[[3.0, 5.0]]]


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_numpy_subclasses_behave_as_before() -> None:
    """The seam checks types and converts nothing: a masked array or a matrix passes as it
    is; ``Parameter`` stores the plain ndarray it wraps, as ``np.asarray`` always gave it."""
    m = np.ma.array(np.arange(16.0).reshape(1, 1, 4, 4), mask=np.zeros((1, 1, 4, 4)))
    assert V.as_array(m, "x") is m
    w = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(F.conv(m, w), F.conv(m.data, w))
    assert type(F.relu(np.matrix([[1.0, -2.0]]))) is np.matrix
    p = nn.Parameter(np.matrix([[1.0, 2.0]]))
    assert type(p.data) is np.ndarray and p.data.shape == (1, 2)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("wrap", [np.matrix, lambda a: np.ma.array(a, mask=np.zeros_like(a))],
                         ids=["matrix", "masked"])
def test_a_subclass_parameter_trains_as_its_plain_array(wrap) -> None:
    """The gradient is made from the stored plain array, not the argument: a matrix gradient
    made Adam's ``g * g`` a matrix product (wrong updates, no error)."""
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = np.array([[0.5, -1.0], [2.0, 0.25]])
    params = [nn.Parameter(wrap(a.copy())), nn.Parameter(a.copy())]
    assert all(type(p.grad) is np.ndarray for p in params)
    for p in params:
        opt = Adam([p], lr=0.1)
        for _ in range(3):
            p.grad[...] = g
            opt.step()
    np.testing.assert_array_equal(params[0].data, params[1].data)


def test_module_load_state_dict_goes_through_the_seam() -> None:
    layer = nn.Linear(2, 3, rng=0)
    state = layer.state_dict()
    layer.load_state_dict({k: v.copy() for k, v in state.items()})  # numpy arrays: loaded
    for bad, kind in [(memoryview(state["weight"]), "memoryview"), (ArrayLike(), "ArrayLike")]:
        with pytest.raises(TypeError, match=r"^Linear\.load_state_dict: state\['weight'\] must "
                                            rf"be a numpy array, got .*{kind}"):
            layer.load_state_dict({**state, "weight": bad})
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"got torch\.Tensor: rot180 computes with NumPy"):
        layer.load_state_dict({**state, "weight": torch.tensor(state["weight"])})


def test_a_numpy_scalar_is_named_as_such() -> None:
    with pytest.raises(TypeError, match=r"^Parameter: data must be a numpy array, got a numpy "
                                        r"scalar \(numpy\.float64\)\."):
        nn.Parameter(np.float64(1.0))


@pytest.mark.parametrize("call", [lambda: nn.Dropout(10**400), lambda: nn.LeakyReLU(10**400),
                                  lambda: SGD([nn.Parameter(np.zeros(2))], lr=10**400),
                                  lambda: V.real(-(10**400), "x")])
def test_an_int_beyond_float_range_is_not_finite(call) -> None:
    with pytest.raises(ValueError, match=r"must be finite.*got an int beyond float's range "
                                         r"\(about 10\*\*400\)"):
        call()


@pytest.mark.parametrize("call", [lambda: V.float_dtype(None, "f"),
                                  lambda: nn.Conv2d(1, 1, 1, dtype=None),
                                  lambda: nn.Linear(1, 1, dtype=None)])
def test_dtype_none_is_refused(call) -> None:
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got None\. Pass "
                                        r"dtype=np\.float32 or np\.float64\."):
        call()


def test_as_array_checks_dtype_and_rank_for_its_caller() -> None:
    with pytest.raises(TypeError, match=r"^SGD: g must have dtype float32 or float64, got int64\. "
                                        r"Convert it with g\.astype\(np\.float32\) \(or "
                                        r"np\.float64\)\.$"):
        V.as_array(np.arange(3), "g", "SGD", dtypes=V.FLOAT_DTYPES)
    with pytest.raises(ValueError, match=r"^f: x must be 2-D or 4-D, got 1-D shape \(3,\)\.$"):
        V.as_array(np.zeros(3), "x", "f", ndim=(4, 2))


# -- one implementation of each check -----------------------------------------------------------

@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: V.real(True, "lr", "SGD"), TypeError, r"^SGD: lr must be a real number, got bool"),
    (lambda: V.real(math.inf, "lr", None), ValueError, r"^lr must be finite, got inf\.$"),
    (lambda: V.real(-1.0, "lr", "SGD", low=0, invalid="learning rate"), ValueError,
     r"^SGD: Invalid learning rate: -1\.0 \(expected lr >= 0\)\.$"),
    (lambda: V.real(1.0, "b", "Adam", low=0, high=1, high_open=True), ValueError,
     r"^Adam: b must be finite and >= 0 and < 1, got 1\.0\.$"),
    (lambda: V.integer(np.float64(2.0), "n", "Conv2d"), TypeError,
     r"^Conv2d: n must be an int, got float64 np\.float64\(2\.0\)\.$"),
    (lambda: V.integer(-1, "seed", low=0), ValueError,
     r"^seed must be >= 0, got -1\. Pass a non-negative int\.$"),
    (lambda: V.flag(1, "bias", "Linear"), TypeError, r"^Linear: bias must be True or False, got "
                                                      r"int 1\.$"),
    (lambda: V.option("x", ("a", "b"), "mode", "f"), ValueError,
     r"^f: mode must be one of \('a', 'b'\), got 'x'\.$"),
    (lambda: V.int_tuple((2, 2.0), "input_shape", "g"), TypeError,
     r"^g: input_shape must be a tuple of ints, got float 2\.0 in \(2, 2\.0\)"),
    (lambda: V.positive_tuple((1, 0), 2, "stride", "MaxPool2d"), ValueError,
     r"^MaxPool2d: stride must be >= 1 in every dimension, got \(1, 0\)"),
    (lambda: V.axis_arg(2, 2, "softmax"), ValueError, r"^softmax: axis 2 is out of range"),
    (lambda: V.float_dtype("int8", "Conv2d"), TypeError, r"^Conv2d: dtype must be float32 or "
                                                          r"float64, got int8\."),
    (lambda: V.generator(1.5, "Dropout"), TypeError, r"^Dropout: rng must be a numpy\.random\."
                                                      r"Generator, an int seed or None, got float"),
])
def test_each_check_names_its_caller(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_integer_takes_numpy_integers_and_real_takes_numpy_floats() -> None:
    assert V.integer(np.int64(3), "n") == 3 and type(V.integer(np.int8(3), "n")) is int
    assert V.real(np.float32(0.5), "p") == 0.5 and V.flag(np.bool_(True), "f") is True
    assert V.real(math.inf, "value", finite=False) == math.inf


CHECK_MODULES = {"functional/_validation.py", "functional/_array.py", "functional/_convspec.py",
                 "functional/_poolspec.py",
                 # as_tuple: the int-or-tuple check that positive_tuple and nd_ints wrap
                 # (_validation imports shapes, so shapes cannot call integer)
                 "functional/shapes.py",
                 # a damaged checkpoint's metadata: CheckpointError in the file's own terms
                 "train/card.py"}
# Readers of data files: a wrong object inside a file is a DataError, not the caller's TypeError.
FILE_READERS = {"data/cifar.py"}
# Names (with or without a leading underscore) that only the check modules may define.
CHECK_NAMES = {"positive_int", "non_negative", "non_negative_int", "real", "real_scalar", "flag",
               "integer", "int", "option", "float_dtype", "positive_tuple", "shape_arg",
               "int_tuple", "weight_shape_arg", "float_array", "as_array", "array_namespace",
               "generator", "as_generator", "make_rng", "check_rng", "check_batch_size",
               "same_dtype", "all_finite"}


def _sources() -> list[tuple[str, ast.Module]]:
    return [(p.relative_to(SRC).as_posix(), ast.parse(p.read_text(encoding="utf-8")))
            for p in sorted(SRC.rglob("*.py"))]


def test_no_package_defines_its_own_argument_checks() -> None:
    """A second ``positive_int`` or ``_flag`` somewhere is how the four copies of issue 12 grew:
    every package imports the one in :mod:`rot180.functional._validation`."""
    found = [f"{path}: def {node.name}" for path, tree in _sources() if path not in CHECK_MODULES
             for node in ast.walk(tree)
             if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in CHECK_NAMES]
    assert found == []
    assert not (SRC / "nn" / "_checks.py").exists()
    assert not (SRC / "optim" / "_validation.py").exists()


def _is_call(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) == name


def _ndarray_refusals(tree: ast.AST) -> list[ast.AST]:
    """``not isinstance(x, np.ndarray)`` and ``type(x) is not np.ndarray`` (or ``is``, ``==``,
    ``!=``), wherever they stand: an ``if``, a ``BoolOp``, a ternary, an ``assert``."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
                and _is_call(node.operand, "isinstance") and len(node.operand.args) == 2
                and "ndarray" in ast.unparse(node.operand.args[1])):
            found.append(node)
        elif (isinstance(node, ast.Compare) and _is_call(node.left, "type")
              and any(isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq) for op in node.ops)
              and any("ndarray" in ast.unparse(c) for c in node.comparators)):
            found.append(node)
    return found


_NUMBER_TYPES = ("int", "float", "Integral", "Real", "Number", "np.integer", "np.floating",
                 "numbers.")


def _hand_number_checks(tree: ast.AST) -> list[ast.AST]:
    """A boolean expression that tests ``isinstance(x, bool)`` beside an ``isinstance`` against
    a number type: the shape of every hand-made copy of ``integer`` / ``real``."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.BoolOp):
            continue
        calls = [c for term in node.values for c in ast.walk(term) if _is_call(c, "isinstance")
                 and len(c.args) == 2]
        kinds = [ast.unparse(c.args[1]) for c in calls]
        if any(k == "bool" or k.startswith(("bool ", "(bool")) for k in kinds) and any(
                any(t in k for t in _NUMBER_TYPES) for k in kinds if k != "bool"):
            found.append(node)
    return found


def _offences(path: str, tree: ast.AST) -> list[str]:
    out = []
    if path not in {"functional/_array.py", *FILE_READERS}:
        out += [f"{path}:{n.lineno}: {ast.unparse(n)}" for n in _ndarray_refusals(tree)]
    if path not in CHECK_MODULES:
        out += [f"{path}:{n.lineno}: {ast.unparse(n)}" for n in _hand_number_checks(tree)]
    return out


def test_array_and_number_checks_go_through_the_one_module() -> None:
    """Outside the seam no module tests whether something is an ``np.ndarray`` (in any boolean
    expression, not only one that raises), and outside the check modules none tests bools
    beside ints or reals: those are :func:`as_array`'s and :func:`integer` / :func:`real`'s."""
    found = [o for path, tree in _sources() for o in _offences(path, tree)]
    assert found == []


@pytest.mark.parametrize("code", [
    "def f(v):\n    if isinstance(v, bool) or not isinstance(v, int):\n        raise TypeError",
    "def f(v):\n    return not isinstance(v, bool) and isinstance(v, Real) and v > 0",
    "def f(v):\n    ok = isinstance(v, int | np.integer) and not isinstance(v, bool)",
    "def f(x):\n    if type(x) is not np.ndarray:\n        raise TypeError('x')",
    "def f(x):\n    if not isinstance(x, np.ndarray) and x is not None:\n        raise TypeError",
    "def f(x):\n    return x if isinstance(x, list) or not isinstance(x, np.ndarray) else 0",
    "def f(x):\n    assert type(x) == np.ndarray",
])
def test_the_source_checks_catch_the_copies_that_passed_before(code: str) -> None:
    """The copies a review added to nn/flatten.py unnoticed: each is caught now."""
    assert _offences("nn/flatten.py", ast.parse(code)) != []


def test_every_package_imports_the_one_module() -> None:
    users = {path.split("/")[0] for path, tree in _sources() for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom)
             and "_validation" in [(node.module or "").split(".")[-1],
                                   *(a.name for a in node.names)]}
    assert {"functional", "nn", "optim", "data", "explain", "commands", "gradcheck.py"} <= users
