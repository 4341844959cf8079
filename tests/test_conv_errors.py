"""Bad input to conv, its gradients and rot180: the documented exception and its message.

``ValueError`` for a wrong value or shape, ``TypeError`` for a wrong type or dtype; every message
names the argument, what was expected, what was received and (asserted where it matters) the
fix. One table row per bad input and public function it reaches.

The base case is valid: ``x (2, 4, 6, 6)``, ``w (6, 2, 3, 3)``, ``groups=2``, ``dz (2, 6, 4, 4)``;
each row breaks one thing.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from rot180.functional import conv, conv_grad_bias, conv_grad_input, conv_grad_weight, rot180

X = np.zeros((2, 4, 6, 6))
W = np.zeros((6, 2, 3, 3))
DZ = np.zeros((2, 6, 4, 4))
G = {"groups": 2}


def zeros(*shape: int, dtype: type = np.float64) -> np.ndarray:
    return np.zeros(shape, dtype)


def gi(dz=DZ, w=W, input_shape=X.shape, **kw):
    return conv_grad_input(dz, w, input_shape, **{**G, **kw})


def gw(x=X, dz=DZ, weight_shape=W.shape, **kw):
    return conv_grad_weight(x, dz, weight_shape, **{**G, **kw})


def fw(x=X, w=W, b=None, **kw):
    return conv(x, w, b, **{**G, **kw})


def test_base_case_is_valid():
    assert fw().shape == DZ.shape
    assert gi().shape == X.shape
    assert gw().shape == W.shape
    assert conv_grad_bias(DZ).shape == (6,)


def row(call, exc, match, id):
    return pytest.param(call, exc, match, id=id)


CHANNELS = [
    row(lambda: fw(x=zeros(2, 6, 6, 6)), ValueError,
        r"conv: channel mismatch: x has C_in=6 channels .* weight expects C_in = "
        r"weight\.shape\[1\] \* groups = 2 \* 2 = 4", "conv x channels"),
    row(lambda: gi(input_shape=(2, 6, 6, 6)), ValueError,
        r"conv_grad_input: channel mismatch: input_shape has C_in=6 .* = 4", "gi input_shape C"),
    row(lambda: gi(dz=zeros(2, 5, 4, 4)), ValueError,
        r"conv_grad_input: channel mismatch: dz has 5 channels \(shape \(2, 5, 4, 4\), read as "
        r"\(N, C_out, \*spatial\)\) but the weight has C_out=6", "gi dz channels"),
    row(lambda: gw(x=zeros(2, 6, 6, 6)), ValueError,
        r"conv_grad_weight: channel mismatch: x has C_in=6 channels", "gw x channels"),
    row(lambda: gw(dz=zeros(2, 3, 4, 4)), ValueError,
        r"conv_grad_weight: channel mismatch: dz has 3 channels .* C_out=6", "gw dz channels"),
    # a batched delta missing its batch axis is read as unbatched; the message says so
    row(lambda: gi(dz=zeros(2, 6, 4)), ValueError,
        r"dz has 2 channels \(shape \(2, 6, 4\), read as unbatched \(C_out, \*spatial\)\)",
        "gi dz read as unbatched"),
]

GROUPS = [
    row(lambda: fw(x=zeros(2, 3, 6, 6), w=zeros(6, 1, 3, 3)), ValueError,
        r"conv: channel mismatch: groups=2 must divide the input channels, got C_in=3 "
        r"\(x shape \(2, 3, 6, 6\)\)\. Choose groups dividing both C_in and C_out",
        "conv groups !| C_in"),
    row(lambda: gi(w=zeros(6, 1, 3, 3), input_shape=(2, 3, 6, 6)), ValueError,
        r"conv_grad_input: .*groups=2 must divide the input channels, got C_in=3",
        "gi groups !| C_in"),
    row(lambda: gw(x=zeros(2, 3, 6, 6), weight_shape=(6, 1, 3, 3)), ValueError,
        r"conv_grad_weight: .*groups=2 must divide the input channels, got C_in=3",
        "gw groups !| C_in"),
    row(lambda: fw(w=zeros(5, 2, 3, 3), b=None), ValueError,
        r"conv: groups=2 must divide the output channels, got C_out=5 \(weight shape "
        r"\(5, 2, 3, 3\)\)\. Choose groups dividing both C_in and C_out", "conv groups !| C_out"),
    row(lambda: gi(dz=zeros(2, 5, 4, 4), w=zeros(5, 2, 3, 3)), ValueError,
        r"conv_grad_input: groups=2 must divide the output channels, got C_out=5",
        "gi groups !| C_out"),
    row(lambda: gw(dz=zeros(2, 5, 4, 4), weight_shape=(5, 2, 3, 3)), ValueError,
        r"conv_grad_weight: groups=2 must divide the output channels, got C_out=5",
        "gw groups !| C_out"),
    row(lambda: fw(groups=0), ValueError, r"groups must be >= 1, got 0\. Pass a positive int",
        "groups 0"),
    row(lambda: fw(groups=2.0), TypeError, r"groups must be an int, got float 2\.0",
        "groups float"),
    row(lambda: fw(groups=True), TypeError, r"groups must be an int, got bool True",
        "groups bool"),
]

KEYWORDS = [
    *[row(lambda f=f, k=k, v=v: f(**{k: v}), ValueError,
          rf"{k} must be >= 1 in every dimension, got {re.escape(repr(v))}\. Pass a positive "
          r"int or a tuple of 2 positive ints", f"{name} {k}={v}")
      for name, f in (("conv", fw), ("gi", gi), ("gw", gw))
      for k in ("stride", "dilation") for v in (0, -1, (1, 0))],
    row(lambda: fw(stride=1.5), TypeError, r"stride must be an int or a tuple of 2 ints, got "
        r"float 1\.5", "stride float"),
    row(lambda: fw(stride=(1, 1, 1)), ValueError, r"stride must have one entry per spatial "
        r"dimension \(2\), got 3 entries \(1, 1, 1\)\. Pass a single int or a tuple of length 2",
        "stride length"),
    row(lambda: fw(dilation=(2, 1.0)), TypeError, r"dilation entries must be ints, got float",
        "dilation float entry"),
]

PADDING = [
    *[row(lambda f=f, p=p: f(padding=p), ValueError,
          rf"padding must be non-negative, got {re.escape(repr(p))}\. To crop, slice the input",
          f"{name} padding={p}")
      for name, f in (("conv", fw), ("gi", gi), ("gw", gw))
      for p in (-1, (0, -2), ((0, -1), (1, 1)))],
    *[row(lambda f=f: f(padding="half"), ValueError,
          r"Invalid padding string 'half', should be one of \('valid', 'same', 'full'\)",
          f"{name} padding string") for name, f in (("conv", fw), ("gi", gi), ("gw", gw))],
    *[row(lambda f=f, s=s: f(padding="same", stride=s), ValueError,
          r"padding='same' is only defined for stride 1, got stride=\(2, (1|2)\)\. Pass explicit "
          r"padding, or use stride=1", f"{name} same stride={s}")
      for name, f in (("conv", fw), ("gi", gi), ("gw", gw)) for s in (2, (2, 1))],
    row(lambda: fw(padding=(1, 1, 1)), ValueError,
        r"padding must have one entry per spatial dimension \(2\), got 3 entries",
        "padding length"),
    row(lambda: fw(padding=((1, 1),)), ValueError,
        r"padding must have one entry per spatial dimension \(2\), got 1 entries .* Pass one "
        r"int or one \(low, high\) pair per spatial dimension", "pairs count"),
    row(lambda: fw(padding=((1, 1, 1), (0, 0))), ValueError,
        r"padding pairs must be \(low, high\), got \(1, 1, 1\) for spatial axis 0", "pair of 3"),
    row(lambda: fw(padding=1.0), TypeError, r"padding must be an int or a tuple of 2 ints, got "
        r"float 1\.0", "padding float"),
]

KERNEL_TOO_LARGE = [
    row(lambda: fw(dilation=3), ValueError,
        r"conv: the dilated kernel is larger than the padded input along spatial axis 0: kernel "
        r"extent d\(k-1\)\+1 = 7 > input 6 \+ padding 0\+0 = 6\. Use a smaller kernel or "
        r"dilation, or more padding", "conv dilated kernel"),
    row(lambda: fw(x=zeros(2, 4, 6, 1), padding=((0, 0), (0, 1))), ValueError,
        r"conv: the dilated kernel is larger than the padded input along spatial axis 1: kernel "
        r"extent d\(k-1\)\+1 = 3 > input 1 \+ padding 0\+1 = 2", "conv kernel vs padded input"),
    row(lambda: gi(dz=zeros(2, 6, 1, 1), input_shape=(2, 4, 2, 2)), ValueError,
        r"conv_grad_input: the dilated kernel is larger than the padded input .* 3 > input 2",
        "gi dilated kernel"),
    row(lambda: gw(x=zeros(2, 4, 6, 6), dz=zeros(2, 6, 1, 1), dilation=(1, 4)), ValueError,
        r"conv_grad_weight: the dilated kernel is larger than the padded input along spatial "
        r"axis 1: kernel extent d\(k-1\)\+1 = 9 > input 6", "gw dilated kernel"),
]

NDIM = [
    row(lambda: fw(x=zeros(2, 4, 6, 6, 6)), ValueError,
        r"conv: expected x of 4 dimensions \(N, C_in, \*spatial\) or 3 \(C_in, \*spatial\) to "
        r"match a 2-D kernel, got 5-D shape \(2, 4, 6, 6, 6\)", "conv x 5-D"),
    row(lambda: fw(x=zeros(4, 6)), ValueError, r"conv: expected x of 4 dimensions .* got 2-D",
        "conv x 2-D"),
    row(lambda: conv(zeros(2, 5), zeros(3, 2, 2, 2)), ValueError,
        r"conv: expected x of 4 dimensions .* got 2-D shape \(2, 5\)", "conv 1-D x, 2-D kernel"),
    row(lambda: fw(x=np.float64(1.0)), ValueError, r"conv: expected x of 4 dimensions .* got "
        r"0-D", "conv x scalar"),
    *[row(lambda f=f, shape=shape: f(w=zeros(*shape)), ValueError,
          rf"{op}: weight must be 3-D, 4-D or 5-D \(C_out, C_in/groups, \*kernel\) for 1, 2 or "
          rf"3 spatial dimensions, got {len(shape)}-D", f"{op} w {len(shape)}-D")
      for op, f in (("conv", fw), ("conv_grad_input", gi))
      for shape in ((6, 2), (6, 2, 1, 1, 1, 1))],
    row(lambda: gw(weight_shape=(6, 2)), ValueError,
        r"conv_grad_weight: weight must be 3-D, 4-D or 5-D .* got 2-D shape \(6, 2\)",
        "gw weight_shape 2-D"),
    row(lambda: gi(dz=zeros(1, 2, 6, 4, 4)), ValueError,
        r"conv_grad_input: expected dz of 4 dimensions \(N, C_out, \*spatial\) or 3 "
        r"\(C_out, \*spatial\) to match a 2-D kernel, got 5-D shape", "gi dz 5-D"),
    row(lambda: gw(dz=zeros(6, 16)), ValueError,
        r"conv_grad_weight: expected dz of 4 dimensions .* got 2-D shape \(6, 16\)", "gw dz 2-D"),
    row(lambda: gw(x=zeros(2, 4, 6, 6, 1)), ValueError,
        r"conv_grad_weight: expected x of 4 dimensions .* got 5-D", "gw x 5-D"),
    row(lambda: conv_grad_bias(zeros(6, 4)), ValueError,
        r"conv_grad_bias: expected dz of shape \(N, C_out, \*spatial\), got 2-D shape \(6, 4\)\. "
        r"For an unbatched delta use dz\[None\]", "grad_bias dz 2-D"),
    row(lambda: rot180(zeros(3, 3)), ValueError,
        r"rot180: expected a kernel \(C_out, C_in/groups, \*k\) with at least one spatial axis, "
        r"got 2-D shape \(3, 3\)", "rot180 2-D"),
    row(lambda: fw(x=zeros(2, 4, 0, 6)), ValueError,
        r"conv: x must have no zero-size axis other than the batch, got shape \(2, 4, 0, 6\)",
        "conv empty x"),
    row(lambda: fw(w=zeros(6, 2, 0, 3)), ValueError,
        r"conv: weight shape must have no zero-size axis, got \(6, 2, 0, 3\)", "conv empty w"),
]

INPUT_SHAPE = [
    # stride 1: (8, 8) would give (6, 6), not dz's (4, 4)
    row(lambda: gi(input_shape=(2, 4, 8, 8)), ValueError,
        r"conv_grad_input: input_shape \(2, 4, 8, 8\) cannot have produced dz of shape "
        r"\(2, 6, 4, 4\): with kernel \(3, 3\), stride \(1, 1\), padding \(\(0, 0\), \(0, 0\)\) "
        r"and dilation \(1, 1\) it gives spatial output \(6, 6\)\. Pass the forward input's "
        r"shape", "gi input_shape wrong size"),
    # stride 2: i = 9 and 10 give o = 4 (remainders 0 and 1); 11 gives 5
    row(lambda: gi(dz=zeros(2, 6, 4, 4), input_shape=(11, 9), stride=2), ValueError,
        r"conv_grad_input: input_shape \(2, 4, 11, 9\) cannot have produced dz .* spatial output "
        r"\(5, 4\)", "gi input_shape beyond the remainder"),
    row(lambda: gi(input_shape=(2, 4, 6)), ValueError,
        r"conv_grad_input: input_shape \(2, 4, 6\) has 3 entries; expected 4 \(the forward "
        r"input's full shape\) or 2 \(its spatial sizes\)", "gi input_shape length"),
    row(lambda: gi(input_shape=(3, 4, 6, 6)), ValueError,
        r"conv_grad_input: input_shape batch \(3,\) does not match dz batch \(2,\)",
        "gi input_shape batch"),
    row(lambda: gi(input_shape=np.array(X.shape)), TypeError,
        r"conv_grad_input: input_shape must be a tuple of ints, got ndarray\. Pass x\.shape",
        "gi input_shape ndarray"),
    row(lambda: gi(input_shape=None), TypeError,
        r"conv_grad_input: input_shape must be a tuple of ints, got NoneType",
        "gi input_shape None"),
    row(lambda: gi(input_shape=(2, 4, 6.5, 6)), TypeError,
        r"conv_grad_input: input_shape must be a tuple of ints, got float 6\.5",
        "gi input_shape float entry"),
    # conv_grad_weight: x and dz that no single forward pass produced together
    row(lambda: gw(x=zeros(2, 4, 7, 7), dz=zeros(2, 6, 2, 2)), ValueError,
        r"conv_grad_weight: (input_shape|x\.shape) \(2, 4, 7, 7\) cannot have produced dz of "
        r"shape \(2, 6, 2, 2\): .* spatial output \(5, 5\)", "gw x vs dz size"),
    row(lambda: gw(x=zeros(2, 4, 8, 8), dz=zeros(2, 6, 4, 4), stride=2), ValueError,
        r"conv_grad_weight: (input_shape|x\.shape) \(2, 4, 8, 8\) cannot have produced dz .* "
        r"spatial output \(3, 3\)", "gw x vs dz size strided"),
    row(lambda: gw(x=zeros(3, 4, 6, 6)), ValueError,
        r"conv_grad_weight: (input_shape|x\.shape) batch \(3,\) does not match dz batch \(2,\)",
        "gw batch"),
    row(lambda: gw(weight_shape=np.array(W.shape)), TypeError,
        r"conv_grad_weight: weight_shape must be a tuple of ints, got ndarray\. Pass w\.shape",
        "gw weight_shape ndarray"),
    row(lambda: gw(weight_shape=(6, 2, 3.0, 3)), TypeError,
        r"conv_grad_weight: weight_shape must be a tuple of ints, got float 3\.0",
        "gw weight_shape float entry"),
]

DTYPE_MSG = (r"must have dtype float32 or float64, got {}\. Convert it with "
             r"{}\.astype\(np\.float32\)")
DTYPES = [
    *[row(call, TypeError, DTYPE_MSG.format(dt, name), f"{fn} {name} {dt}")
      for dt in ("int64", "float16", "complex128", "bool")
      for fn, name, call in (
          ("conv", "x", lambda dt=dt: fw(x=X.astype(dt))),
          ("conv", "w", lambda dt=dt: fw(w=W.astype(dt))),
          ("conv", "b", lambda dt=dt: fw(b=np.zeros(6, dt))),
          ("gi", "dz", lambda dt=dt: gi(dz=DZ.astype(dt))),
          ("gi", "w", lambda dt=dt: gi(w=W.astype(dt))),
          ("gw", "x", lambda dt=dt: gw(x=X.astype(dt))),
          ("gw", "dz", lambda dt=dt: gw(dz=DZ.astype(dt))),
          ("grad_bias", "dz", lambda dt=dt: conv_grad_bias(DZ.astype(dt))),
          ("rot180", "w", lambda dt=dt: rot180(W.astype(dt))),
      )],
    row(lambda: fw(x=[[[[1, 2]]]]), TypeError, DTYPE_MSG.format("int64", "x"), "conv int list"),
]

MIXED = [
    row(lambda: fw(x=X.astype(np.float32)), TypeError,
        r"All arrays must share one dtype, got x: float32, w: float64\. Cast them to one dtype",
        "conv x32 w64"),
    row(lambda: fw(b=np.zeros(6, np.float32)), TypeError,
        r"All arrays must share one dtype, got x: float64, w: float64, b: float32", "conv b32"),
    row(lambda: gi(dz=DZ.astype(np.float32)), TypeError,
        r"All arrays must share one dtype, got dz: float32, w: float64", "gi dz32 w64"),
    row(lambda: gw(x=X.astype(np.float32)), TypeError,
        r"All arrays must share one dtype, got x: float32, dz: float64", "gw x32 dz64"),
]

BIAS = [
    row(lambda: fw(b=np.zeros(5)), ValueError,
        r"conv: bias must have shape \(C_out,\) = \(6,\), got \(5,\)", "bias length"),
    row(lambda: fw(b=np.zeros((6, 1))), ValueError,
        r"conv: bias must have shape \(C_out,\) = \(6,\), got \(6, 1\)", "bias 2-D"),
    row(lambda: fw(b=np.zeros(())), ValueError, r"got \(\)", "bias scalar"),
]

NON_ARRAYS = [
    *[row(call, TypeError, rf"{name} must be a numpy array, got {kind}\. Convert it with "
          r"np\.asarray", f"{fn} {name} {kind}")
      for kind, value in (("str", "abc"), ("NoneType", None), ("dict", {}), ("object", object()))
      for fn, name, call in (
          ("conv", "x", lambda v=value: fw(x=v)),
          ("conv", "w", lambda v=value: fw(w=v)),
          *([("conv", "b", lambda v=value: fw(b=v))] if value is not None else []),
          ("gi", "dz", lambda v=value: gi(dz=v)),
          ("gi", "w", lambda v=value: gi(w=v)),
          ("gw", "x", lambda v=value: gw(x=v)),
          ("gw", "dz", lambda v=value: gw(dz=v)),
          ("grad_bias", "dz", lambda v=value: conv_grad_bias(v)),
          ("rot180", "w", lambda v=value: rot180(v)),
      )],
]


@pytest.mark.parametrize(("call", "exc", "match"), [
    *CHANNELS, *GROUPS, *KEYWORDS, *PADDING, *KERNEL_TOO_LARGE, *NDIM, *INPUT_SHAPE, *DTYPES,
    *MIXED, *BIAS, *NON_ARRAYS,
])
def test_bad_input_raises_with_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_torch_tensor_is_not_accepted():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"x must be a numpy array, got torch\.Tensor: rot180 "
                                        r"computes with NumPy .* Convert it"):
        conv(torch.zeros(2, 4, 6, 6), W, groups=2)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_messages_speak_of_the_right_rank(nd):
    """The expected ranks in a message follow the kernel's spatial dimensions."""
    w = zeros(2, 1, *(2,) * nd)
    with pytest.raises(ValueError, match=rf"expected x of {nd + 2} dimensions .* or {nd + 1} "
                                         rf"\(C_in, \*spatial\) to match a {nd}-D kernel"):
        conv(zeros(*(1,) * (nd + 3)), w)
    with pytest.raises(ValueError, match=rf"stride must have one entry per spatial dimension "
                                         rf"\({nd}\)"):
        conv(zeros(1, 1, *(3,) * nd), w, stride=(1,) * (nd + 1))
