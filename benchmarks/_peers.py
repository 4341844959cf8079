"""Optional benchmark peers beside PyTorch: TensorFlow-CPU (oneDNN) and JAX (XLA:CPU).

Both run in the benchmark's own process. Neither is a dependency of rot180: they come with the
``bench`` extra, and a peer that does not import is reported ``absent: <reason>`` by
:func:`available`, never raised.

Each peer is timed in **its own favourite form**, which is not PyTorch's: arrays and weights are
converted into the peer's layout once, outside the timed step, and the outputs are converted
back to PyTorch's layouts only for the correctness guard (:func:`check`), never in the step.

* **TensorFlow** runs channels-last (``NHWC``, ``NWC`` as ``N1WC``, ``NDHWC``; filters
  ``HWIO``), the layout its oneDNN CPU kernels are written for (TensorFlow's CPU ``Conv2D``
  rejects ``NCHW``). One step is a ``tf.function`` (graph mode, ``jit_compile=False``: the
  default oneDNN path a TensorFlow user gets) holding the forward and ``GradientTape``'s
  vector-Jacobian product. Where TensorFlow's CPU kernels refuse a layer, the step takes the
  route a TensorFlow user would, and the step's ``note`` says which:

  - grouped convolution: inference runs TF's grouped ``conv2d``; training, 3-D and transposed
    layers (no CPU kernel: "Dimensions must be equal" / "input and filter must have the same
    depth") run as ``groups`` convolutions on channel slices, concatenated ("split into g
    convs"). Keras 3 compiles grouped layers with XLA instead, but XLA's grouped convolution
    took 22.7 s where the split took 0.14 s (ResNeXt 3x3 g32, one training step, here).
  - depthwise (groups == C_in, C_out a multiple of it): ``tf.nn.depthwise_conv2d`` when its
    rules allow (equal strides, no dilation with stride > 1), else the grouped routes above.
  - dilated training with stride 1: ``tf.nn.convolution``'s own route (space-to-batch, a
    plain convolution, batch-to-space), as the dilated ``Conv2DBackpropInput`` has no CPU
    kernel ("Current CPU implementations do not yet support dilation rates larger than 1").
  - dilated transposed convolution, and dilated training with stride > 1: compiled with XLA
    (``jit_compile=True``), the only route TF has ("XLA: ...").

  1-D layers are 2-D ones with a height of 1, as ``tf.nn.conv1d`` does internally (it has no
  explicit padding). 3-D padding that ``"SAME"`` cannot express is a ``tf.pad`` in the step.
* **JAX** runs ``jax.lax.conv_general_dilated`` under ``jax.jit``: the forward and
  ``jax.vjp``'s pullback in one compiled function, waited for with ``block_until_ready``.
  Layout: see ``JAX_LAYOUT`` (measured). Transposed convolution is the forward correlation with
  the stride turned into input dilation (``lhs_dilation``), the kernel flipped and its in/out
  channels swapped per group, and padding ``(d(k-1)-p, d(k-1)-p+output_padding)``: the
  rot180 rule itself. The kernel conversion happens once, outside the step.

Threads (:func:`configure`, called before either peer is imported):

* TensorFlow: ``tf.config.threading.set_intra_op_parallelism_threads(threads)`` and
  ``inter_op`` 1, set right after import, before the first op (also as
  ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``).
* JAX 0.10: the XLA:CPU client sizes its thread pool from ``PJRT_NPROC`` (then ``NPROC``),
  otherwise from the cores it may run on (``libjax_common.so`` reads both names); its
  intra-op work runs in that pool. ``configure`` sets ``PJRT_NPROC=threads``. Checked by the
  CPU ticks of each OS thread over ten 2048^2 matmuls: ``PJRT_NPROC=1`` puts all of them on
  one thread (180, 0, ...), ``PJRT_NPROC=2`` spreads them (80, 54, 36, 18). The old recipe
  ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` is not needed and is
  not set: XLA_FLAGS is shared with TensorFlow's own XLA, which aborts on flags it does not
  know.

Usage::

    python benchmarks/_peers.py --selfcheck          # both peers against torch, eight layers
    python benchmarks/_peers.py --jax-layouts        # the JAX_LAYOUT measurement
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np

PEERS = ("tensorflow", "jax")

# Measured on this machine (2 cores, shared, 2 threads), one training step of a 3x3 64 -> 64
# stride-1 layer on (32, 64, 32, 32), medians of 15 interleaved runs, JAX 0.10.2, two runs:
# NCHW/OIHW 0.142 / 0.111 s, NHWC/HWIO 0.133 / 0.102 s: NHWC takes 0.92-0.94 of NCHW's time
# (XLA:CPU transposes NCHW to its own channels-last form inside the step). `--jax-layouts`.
JAX_LAYOUT = "channels_last"

_threads: int | None = None


def configure(threads: int) -> None:
    """Set both peers' thread counts; call before either is imported."""
    global _threads
    _threads = int(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(_threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["PJRT_NPROC"] = str(_threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["JAX_ENABLE_X64"] = "0"


def _tf():
    import tensorflow as tf

    if _threads is not None and tf.config.threading.get_intra_op_parallelism_threads() != _threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as exc:  # the runtime already started with other settings
            raise RuntimeError(f"TensorFlow started before configure({_threads}): {exc}. "
                               "Call _peers.configure() before anything runs a TF op.") from exc
    return tf


def _jax():
    import jax

    jax.config.update("jax_enable_x64", False)
    return jax


def available() -> dict[str, str]:
    """``{peer: version}`` for each peer that imports, ``{peer: "absent: <reason>"}`` otherwise."""
    found = {}
    for peer, load in (("tensorflow", _tf), ("jax", _jax)):
        try:
            found[peer] = load().__version__
        except Exception as exc:  # noqa: BLE001 - any import failure means "absent"
            found[peer] = f"absent: {type(exc).__name__}: {exc}".splitlines()[0]
    return found


class Outputs:
    """A step's results, held in the peer's layout; read (iterated, indexed) in PyTorch's.

    The conversion (channels-last to channels-first, the kernel back to PyTorch's layout) runs
    on the first read, so a timed call only pays for building this holder.
    """

    __slots__ = ("native", "_convert", "_torch")

    def __init__(self, native, convert) -> None:
        self.native, self._convert, self._torch = native, convert, None

    def torch(self) -> list[np.ndarray]:
        if self._torch is None:
            self._torch = self._convert(self.native)
        return self._torch

    def __iter__(self):
        return iter(self.torch())

    def __len__(self) -> int:
        return len(self.torch())

    def __getitem__(self, i):
        return self.torch()[i]


class Step:
    """One timed step on a peer: ``step()`` runs it, waits for it and returns :class:`Outputs`
    (z, then dx, dw, db when training), read in PyTorch's layouts.

    ``note`` says how the peer ran the layer (``""``, or e.g. ``"XLA: ..."``).
    """

    def __init__(self, run, to_torch, note: str = "") -> None:
        self._run, self._to_torch, self.note = run, to_torch, note

    def __call__(self) -> Outputs:
        return Outputs(self._run(), self._to_torch)


def _geometry(layer):
    """Per-axis tuples and the PyTorch output size, ``O = (I-1)s - 2p + d(k-1) + op + 1``
    (transposed) or ``O = floor((I + 2p - d(k-1) - 1) / s) + 1``."""
    nd = layer.nd

    def tup(v):
        return (v,) * nd if isinstance(v, int) else tuple(v)

    k, s, p, d = tup(layer.kernel), tup(layer.stride), tup(layer.padding), tup(layer.dilation)
    op = tup(getattr(layer, "output_padding", 0) or 0)
    size = tup(layer.size)
    if layer.transposed:
        out = tuple((i - 1) * s_ - 2 * p_ + d_ * (k_ - 1) + o_ + 1
                    for i, k_, s_, p_, d_, o_ in zip(size, k, s, p, d, op, strict=True))
    else:
        out = tuple((i + 2 * p_ - d_ * (k_ - 1) - 1) // s_ + 1
                    for i, k_, s_, p_, d_ in zip(size, k, s, p, d, strict=True))
    return k, s, p, d, op, size, out


def make_step(peer: str, layer, x, w, b, dz) -> Step:
    """A :class:`Step` running one step of ``layer`` on ``peer``: ``z = conv(x, w) + b`` and,
    when ``layer.train``, the vector-Jacobian product with ``dz`` for x, w and b. Calling it
    runs the step (compiled here, once), waits, and returns :class:`Outputs`: z (dx, dw, db),
    which read as numpy arrays in PyTorch's layouts.

    Shape:
        x ``(N, C_in, *size)``; w ``(C_out, C_in/groups, *k)``, or ``(C_in, C_out/groups, *k)``
        when ``layer.transposed``; b ``(C_out,)``; dz ``(N, C_out, *out)`` (PyTorch layouts).

    Raises ``NotImplementedError`` (with the reason) for a layer the peer has no op for.
    """
    if peer == "tensorflow":
        return _tf_step(layer, x, w, b, dz)
    if peer == "jax":
        return _jax_step(layer, x, w, b, dz, JAX_LAYOUT)
    raise ValueError(f"make_step: unknown peer {peer!r}, should be one of {PEERS}")


def check(peer: str, layer, arrays, torch_outputs) -> float:
    """Largest relative difference ``max|a - t| / max(1, max|t|)`` between the peer's outputs
    and torch's (numpy arrays or tensors, in the order z, dx, dw, db).

    ``arrays`` is ``(x, w, b, dz)`` (a step is built for the check) or a :class:`Step` already
    made by :func:`make_step` (reused, nothing recompiled).
    """
    step = arrays if isinstance(arrays, Step) else make_step(peer, layer, *arrays)
    worst = 0.0
    for a, t in zip(step(), torch_outputs, strict=True):
        t = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)
        if a.shape != t.shape:
            raise AssertionError(f"{peer}: output shape {a.shape}, torch's is {t.shape}")
        worst = max(worst, float(np.abs(a - t).max() / max(1.0, np.abs(t).max())))
    return worst


# ---------------------------------------------------------------- TensorFlow

def _first_error(exc) -> str:
    """The line of a TensorFlow error that says what failed (not its traceback)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(("[[", "File ", "Detected at")):
            return ln[:200]
    return lines[0][:200] if lines else type(exc).__name__


def _tf_step(layer, x, w, b, dz) -> Step:
    tf = _tf()
    nd, g = layer.nd, layer.groups
    k, s, p, d, op, _size, out = _geometry(layer)
    c_in, c_out = x.shape[1], b.shape[0]
    # Channels-last, with a height-1 axis for 1-D layers (what tf.nn.conv1d does inside).
    lift = nd == 1
    if lift:
        # Stride s on the height-1 axis too: it still gives one row, and depthwise_conv2d
        # wants equal strides.
        k, d, out = ((1, *v) for v in (k, d, out))
        s, p, op = (s[0], *s), (0, *p), (0, *op)
        x, w, dz = x[:, :, None], w[:, :, None], dz[:, :, None]
    sd = len(k)
    def to_native(a):
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))

    def from_native(a):
        a = np.moveaxis(np.asarray(a), -1, 1)
        return a[:, :, 0] if lift else a

    # Filters: conv (C_out, C_in/g, *k) -> (*k, C_in/g, C_out); ConvTranspose (C_in, C_out, *k)
    # -> conv2d_transpose's (*k, C_out, C_in), the same axis permutation.
    perm = (*range(2, 2 + sd), 1, 0)
    inv = tuple(np.argsort(perm))
    depthwise = (not layer.transposed and sd == 2 and g == c_in and w.shape[1] == 1
                 and s[0] == s[1] and (s[0] == 1 or d == (1, 1)))
    if depthwise:
        # depthwise_conv2d's filter (kh, kw, C_in, m) gives channel c*m + j, as PyTorch's
        # (C_out = C_in*m, 1, kh, kw) does for out channel c*m + j.
        m = c_out // c_in
        wn = np.ascontiguousarray(w.reshape(c_in, m, *k).transpose(2, 3, 0, 1))

        def w_from(a):
            return np.asarray(a).transpose(2, 3, 0, 1).reshape(c_out, 1, *k)
    else:
        wn = np.ascontiguousarray(w.transpose(perm))

        def w_from(a):
            return np.asarray(a).transpose(inv)

    if lift:
        w_from0 = w_from

        def w_from(a):
            return w_from0(a)[:, :, 0]

    strides = [1, *s, 1]
    explicit = [[0, 0], *([p_, p_] for p_ in p), [0, 0]]
    dilated = any(d_ > 1 for d_ in d)
    # TF's CPU kernels have no grouped gradient, no grouped 3-D and no grouped transposed
    # convolution: those run as g convolutions on channel slices, concatenated (Keras 2's way;
    # XLA's grouped convolution took 100x longer here: 22.7 s vs 0.14 s on a ResNeXt 3x3 g32).
    split = g > 1 and not depthwise and (layer.train or sd == 3 or layer.transposed)
    cg = c_out // g if split else c_out
    note = f"split into {g} convs" if split else ""
    if layer.transposed:
        n = x.shape[0]
        if dilated:
            note = ", ".join(filter(None, (note, "XLA: TF's CPU kernels refuse dilated "
                                                 "transposed conv")))
        # conv2d_transpose is the input gradient of the convolution that maps the output back
        # onto the input, so PyTorch's output_padding op is padding (p, p - op): then
        # O + 2p - op - d(k-1) - 1 = (I-1)s exactly, for every op (PyTorch allows op up to
        # max(s, d) - 1). A negative p - op, and conv3d_transpose (SAME/VALID only), take the
        # VALID result, F = (I-1)s + d(k-1) + 1 long, PyTorch's window [p, p + O) of it, and
        # zeros past F (nothing reaches there but the bias).
        if sd == 2 and all(p_ >= o_ for p_, o_ in zip(p, op, strict=True)):
            pads = [[0, 0], *([p_, p_ - o_] for p_, o_ in zip(p, op, strict=True)), [0, 0]]

            def base(xa, wa):
                return tf.nn.conv2d_transpose(xa, wa, (n, *out, cg), strides, pads,
                                              dilations=[1, *d, 1])
        else:
            full = tuple((i - 1) * s_ + d_ * (k_ - 1) + 1
                         for i, s_, d_, k_ in zip(x.shape[2:], s, d, k, strict=True))
            window = (slice(None), *(slice(p_, min(f, p_ + o_))
                                     for p_, o_, f in zip(p, out, full, strict=True)))
            tail = [[0, 0], *([0, max(0, p_ + o_ - f)]
                              for p_, o_, f in zip(p, out, full, strict=True)), [0, 0]]
            transpose = tf.nn.conv2d_transpose if sd == 2 else tf.nn.conv3d_transpose

            def base(xa, wa):
                z = transpose(xa, wa, (n, *full, cg), strides, "VALID", dilations=[1, *d, 1])
                z = z[window]
                return tf.pad(z, tail) if any(t[1] for t in tail) else z
    elif depthwise:
        # tf.pad, not explicit padding: explicit padding followed by bias_add aborts the
        # process in TF 2.21 (grappler fuses them; "Check failed ... tensor_format.h:428").
        def base(xa, wa):
            if any(p):
                xa = tf.pad(xa, explicit)
            return tf.nn.depthwise_conv2d(xa, wa, strides, "VALID", dilations=d)
    elif layer.train and dilated and s == (1,) * sd:
        # What tf.nn.convolution does for a dilated layer (its gradients have no CPU kernel
        # otherwise): space_to_batch, a plain convolution, batch_to_space. SAME or VALID only.
        same = all(2 * p_ == d_ * (k_ - 1) for k_, p_, d_ in zip(k, p, d, strict=True))
        note = ", ".join(filter(None, (note, "space-to-batch (tf.nn.convolution, dilated)")))

        def base(xa, wa):
            if not same and any(p):
                xa = tf.pad(xa, explicit)
            return tf.nn.convolution(xa, wa, padding="SAME" if same else "VALID", dilations=d)
    else:
        if layer.train and dilated:
            note = "XLA: TF's CPU kernels refuse dilated conv gradients with stride > 1"
        if sd == 2:
            def base(xa, wa):
                return tf.nn.conv2d(xa, wa, strides, explicit, dilations=[1, *d, 1])
        else:
            same = all(2 * p_ == d_ * (k_ - 1) and s_ == 1
                       for k_, s_, p_, d_ in zip(k, s, p, d, strict=True))

            def base(xa, wa):
                if same or not any(p):
                    return tf.nn.conv3d(xa, wa, strides, "SAME" if any(p) else "VALID",
                                        dilations=[1, *d, 1])
                return tf.nn.conv3d(tf.pad(xa, explicit), wa, strides, "VALID",
                                    dilations=[1, *d, 1])

    if split:
        def conv(xa, wa):
            parts = zip(tf.split(xa, g, axis=-1), tf.split(wa, g, axis=-1), strict=True)
            return tf.concat([base(xp, wp) for xp, wp in parts], axis=-1)
    else:
        conv = base

    def forward(xa, wa, ba):
        return tf.nn.bias_add(conv(xa, wa), ba)

    def train(xa, wa, ba, dza):
        with tf.GradientTape() as tape:
            tape.watch([xa, wa, ba])
            z = forward(xa, wa, ba)
        return (z, *tape.gradient(z, [xa, wa, ba], output_gradients=dza))

    args = [tf.constant(a) for a in (to_native(x), wn, b)]
    if layer.train:
        args.append(tf.constant(to_native(dz)))
    spec = [tf.TensorSpec(a.shape, tf.float32) for a in args]
    fn = tf.function(train if layer.train else forward, input_signature=spec,
                     jit_compile=note.startswith("XLA"), reduce_retracing=True, autograph=False)
    try:
        fn(*args)  # trace (and compile) outside the timed calls
    except tf.errors.OpError as exc:
        raise NotImplementedError(f"TensorFlow: {_first_error(exc)}") from exc

    def run():
        return fn(*args)  # eager CPU results are complete when the call returns

    def to_torch(outs):
        if not layer.train:
            return [from_native(outs)]
        z, dx, dwn, db = outs
        return [from_native(z), from_native(dx), w_from(dwn), np.asarray(db)]

    return Step(run, to_torch, note=note or ("depthwise_conv2d" if depthwise else ""))


# ---------------------------------------------------------------- JAX

def _jax_step(layer, x, w, b, dz, layout: str) -> Step:
    jax = _jax()
    import jax.numpy as jnp
    from jax import lax

    nd, g = layer.nd, layer.groups
    k, s, p, d, op, _size, _out = _geometry(layer)
    sp = "DHW"[3 - nd:]
    spatial = tuple(range(2, 2 + nd))
    if layer.transposed:
        # ConvTranspose's weight (C_in, C_out/g, *k) as the forward correlation's kernel
        # (C_out, C_in/g, *k), flipped: per group g, w_conv[g, o, i] = rev(w[g, i, o]).
        c_in, cog = w.shape[0], w.shape[1]
        wc = w.reshape(g, c_in // g, cog, *k).swapaxes(1, 2).reshape(g * cog, c_in // g, *k)
        wc = np.ascontiguousarray(np.flip(wc, axis=spatial))
        conv_kw = dict(window_strides=(1,) * nd, lhs_dilation=s, rhs_dilation=d,
                       padding=[(d_ * (k_ - 1) - p_, d_ * (k_ - 1) - p_ + o_)
                                for k_, p_, d_, o_ in zip(k, p, d, op, strict=True)])

        def w_back(dwc):
            dwc = np.flip(np.asarray(dwc), axis=spatial)
            return dwc.reshape(g, cog, c_in // g, *k).swapaxes(1, 2).reshape(w.shape)
    else:
        wc = w
        conv_kw = dict(window_strides=s, rhs_dilation=d, padding=[(p_, p_) for p_ in p])

        def w_back(dwc):
            return np.asarray(dwc)

    if layout == "channels_last":
        dn = ("N" + sp + "C", sp + "IO", "N" + sp + "C")
        bshape = (-1,)
        wn = np.ascontiguousarray(np.moveaxis(wc, (0, 1), (-1, -2)))

        def to_native(a):
            return np.ascontiguousarray(np.moveaxis(a, 1, -1))

        def from_native(a):
            return np.moveaxis(np.asarray(a), -1, 1)

        def w_from(a):
            return w_back(np.moveaxis(np.asarray(a), (-1, -2), (0, 1)))
    else:
        dn = ("NC" + sp, "OI" + sp, "NC" + sp)
        bshape = (-1,) + (1,) * nd
        to_native = from_native = np.asarray
        wn, w_from = wc, w_back

    def forward(xa, wa, ba):
        z = lax.conv_general_dilated(xa, wa, dimension_numbers=dn, feature_group_count=g,
                                     **conv_kw)
        return z + jnp.reshape(ba, bshape)

    def train(xa, wa, ba, dza):
        z, pullback = jax.vjp(forward, xa, wa, ba)
        return (z, *pullback(dza))

    args = [jax.device_put(a) for a in (to_native(x), wn, b)]
    if layer.train:
        fn = jax.jit(train)
        args.append(jax.device_put(to_native(dz)))
    else:
        fn = jax.jit(forward)
    jax.block_until_ready(fn(*args))  # compile outside the timed calls

    def run():
        return jax.block_until_ready(fn(*args))

    def to_torch(outs):
        if not layer.train:
            return [from_native(outs)]
        z, dx, dwn, db = outs
        return [from_native(z), from_native(dx), w_from(dwn), np.asarray(db)]

    return Step(run, to_torch, note=f"jit {layout}")


# ---------------------------------------------------------------- self-check

@dataclass
class Layer:
    """The attributes families.py's layers have (a stand-in for the self-check)."""

    name: str
    nd: int
    n: int
    c_in: int
    size: tuple
    c_out: int
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int = 1
    transposed: bool = False
    output_padding: tuple = (0,)
    train: bool = True


def _L(name, nd, n, c_in, size, c_out, k, s=1, p=0, d=1, groups=1, transposed=False, op=0,
       train=True):
    def t(v):
        return (v,) * nd if isinstance(v, int) else tuple(v)

    return Layer(name, nd, n, c_in, t(size), c_out, t(k), t(s), t(p), t(d), groups, transposed,
                 t(op), train)


SELFCHECK = [
    _L("3x3 s1", 2, 4, 16, 16, 32, 3, 1, 1),
    _L("3x3 s2", 2, 4, 16, 17, 32, 3, 2, 1),
    _L("depthwise 3x3 s2", 2, 4, 32, 16, 32, 3, 2, 1, groups=32),
    _L("depthwise 3x3 s1 x2", 2, 2, 16, 12, 32, 3, 1, 1, groups=16),
    _L("grouped 3x3 g4", 2, 4, 32, 12, 64, 3, 1, 1, groups=4),
    _L("1-D k5 s2", 1, 4, 16, 101, 32, 5, 2, 2),
    _L("1-D depthwise k5 s2", 1, 4, 16, 64, 16, 5, 2, 2, groups=16),
    _L("3-D 3x3x3", 3, 2, 8, (6, 10, 10), 16, 3, 1, 1),
    _L("3-D 3x3x3 s2 p1", 3, 2, 8, (7, 10, 10), 16, 3, 2, 1),
    _L("3-D grouped g2", 3, 2, 8, 6, 16, 3, 1, 1, groups=2),
    _L("grouped 3x3 g4 inference", 2, 2, 32, 12, 64, 3, 2, 1, groups=4, train=False),
    _L("1-D dilated 2", 1, 4, 16, 50, 16, 3, 1, 2, d=2),
    _L("transposed 3x3 s2 op1", 2, 4, 16, 8, 8, 3, 2, 1, transposed=True, op=1),
    _L("transposed 4x4 s2", 2, 4, 16, 8, 8, 4, 2, 1, transposed=True),
    _L("transposed 1-D k4 s2", 1, 4, 16, 20, 8, 4, 2, 1, transposed=True),
    _L("transposed 3-D k3 s2 op1", 3, 2, 8, 5, 4, 3, 2, 1, transposed=True, op=1),
    _L("transposed grouped g2", 2, 2, 8, 6, 8, 3, 2, 1, groups=2, transposed=True, op=1),
    _L("transposed dilated 2", 2, 2, 8, 6, 8, 3, 1, 2, d=2, transposed=True),
    _L("transposed 1-D d2 op1 > s-1", 1, 2, 16, 40, 1, 3, 1, 3, d=2, transposed=True, op=1),
    _L("transposed g4 s(1,3) d(3,1)", 2, 2, 16, 11, 16, 2, (1, 3), (2, 1), d=(3, 1), groups=16,
       transposed=True, op=(1, 2)),
    _L("transposed op > p", 2, 2, 8, 7, 8, 3, 3, 0, transposed=True, op=2),
    _L("dilated 2", 2, 4, 16, 16, 16, 3, 1, 2, d=2),
    _L("dilated 4 s2", 2, 2, 16, 20, 16, 3, 2, 4, d=4),
    _L("1x7 asymmetric", 2, 4, 16, (12, 14), 16, (1, 7), 1, (0, 3)),
    _L("3x3 inference batch 1", 2, 1, 32, 14, 64, 3, 1, 1, train=False),
]


def torch_reference(layer, seed: int = 0):
    """Arrays for ``layer`` and torch's outputs: ``((x, w, b, dz), [z, dx, dw, db])``."""
    import torch
    import torch.nn.functional as F

    k, s, p, d, op, size, out = _geometry(layer)
    rng = np.random.default_rng(seed)
    if layer.transposed:
        wshape = (layer.c_in, layer.c_out // layer.groups, *k)
    else:
        wshape = (layer.c_out, layer.c_in // layer.groups, *k)
    x = rng.standard_normal((layer.n, layer.c_in, *size), dtype=np.float32)
    w = (rng.standard_normal(wshape, dtype=np.float32) / np.sqrt(np.prod(wshape[1:])))
    w = w.astype(np.float32)
    b = rng.standard_normal(layer.c_out, dtype=np.float32)
    dz = rng.standard_normal((layer.n, layer.c_out, *out), dtype=np.float32)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_(layer.train) for a in (x, w, b))
    if layer.transposed:
        fn = getattr(F, f"conv_transpose{layer.nd}d")
        z = fn(tx, tw, tb, stride=s, padding=p, output_padding=op, groups=layer.groups,
               dilation=d)
    else:
        fn = getattr(F, f"conv{layer.nd}d")
        z = fn(tx, tw, tb, stride=s, padding=p, dilation=d, groups=layer.groups)
    if not layer.train:
        return (x, w, b, dz), [z.detach()]
    z.backward(torch.from_numpy(dz))
    return (x, w, b, dz), [z.detach(), tx.grad, tw.grad, tb.grad]


def selfcheck(peers=PEERS) -> int:
    versions = available()
    print("peers:", ", ".join(f"{p} {versions[p]}" for p in peers))
    bad, missing = 0, []
    for layer in SELFCHECK:
        arrays, ref = torch_reference(layer)
        cells = []
        for peer in peers:
            if versions[peer].startswith("absent"):
                cells.append(f"{peer}: absent")
                continue
            try:
                step = make_step(peer, layer, *arrays)
            except NotImplementedError as exc:
                cells.append(f"{peer}: n/a ({exc})")
                missing.append(f"{peer}: {layer.name}")
                continue
            diff = check(peer, layer, step, ref)
            bad += diff >= 1e-3
            note = f" [{step.note}]" if step.note else ""
            cells.append(f"{peer}: {diff:.1e}{note}")
        print(f"{layer.name:28s} " + "   ".join(cells))
    print("all differences < 1e-3" if not bad else f"{bad} differences >= 1e-3",
          f"; n/a: {', '.join(missing)}" if missing else "; every layer ran")
    return int(bad > 0)


def jax_layouts(repeats: int = 15) -> None:
    """Time one training step of a 3x3 64-channel layer in JAX's two layouts, interleaved."""
    from _common import interleaved

    layer = _L("3x3 64", 2, 32, 64, 32, 64, 3, 1, 1)
    arrays, _ = torch_reference(layer)
    steps = [_jax_step(layer, *arrays, lay) for lay in ("channels_first", "channels_last")]
    cf, cl = interleaved(steps, repeats)
    print(f"JAX {_jax().__version__}, {_threads} threads, {layer.name} on (32, 64, 32, 32): "
          f"NCHW/OIHW {cf:.4f} s, NHWC/HWIO {cl:.4f} s, NHWC/NCHW {cl / cf:.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--selfcheck", action="store_true", help="both peers against torch")
    ap.add_argument("--jax-layouts", action="store_true", help="time JAX's NCHW vs NHWC")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", default=",".join(PEERS))
    args = ap.parse_args(argv)
    configure(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.jax_layouts:
        jax_layouts()
    if args.selfcheck or not args.jax_layouts:
        return selfcheck(tuple(args.peers.split(",")))
    return 0


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    raise SystemExit(main())
