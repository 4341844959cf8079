"""``Parameter`` and ``Module``: the forward/backward protocol every layer follows.

A module computes ``forward(x)``, caching what its backward rule needs, and ``backward(dy)``
returns ``dx`` while **accumulating** (``+=``) the gradients of its parameters. Modules never
update parameters: optimizers do (see :mod:`rot180.optim`). Parameter and buffer names and array
layouts match PyTorch, so ``state_dict()`` moves weights to and from a ``torch.nn.Module``
without transposes.

A layer's cache has one slot, so a module may run once per forward pass: a second use in the
same pass (one ``Linear`` twice in a ``Sequential``) is refused with its positions and the fix,
and weights are shared by sharing :class:`Parameter` objects between two layers instead (see
:mod:`rot180.nn._passes`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from ..functional import _validation as V
from ._passes import track_backward, track_forward

__all__ = ["Parameter", "Module", "StateDictError"]


class StateDictError(ValueError):
    """Raised by :meth:`Module.load_state_dict` listing every missing, unexpected or mis-shaped
    entry."""


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape and dtype).

    Shape:
        - data, grad: any shape
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray) -> None:
        # Stored as the array namespace gives it (a backend's array as it is); a numpy subclass
        # (np.matrix, a masked array) as the plain ndarray it wraps, its gradient too (a matrix
        # gradient made Adam's g * g a matrix product).
        arr = V.as_array(data, "data", "Parameter", dtypes=V.FLOAT_DTYPES,
                         cast="data.astype(np.float32)")
        xp = V.array_namespace(arr)
        self.data = xp.asarray(arr)  # type: ignore[union-attr]
        self.grad = xp.zeros_like(self.data)  # type: ignore[union-attr]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer: ``forward(x)``, ``backward(dy) -> dx``, parameters, state.

    Attributes that are :class:`Parameter` or :class:`Module` instances are registered
    automatically, in assignment order, as in PyTorch; arrays registered with
    :meth:`register_buffer` are saved in ``state_dict`` too (e.g. BatchNorm's running statistics).
    """

    training: bool
    #: False for a module whose forward caches nothing (``Identity``): it may run more than
    #: once per pass. Every other module runs once per pass (see :mod:`rot180.nn._passes`).
    _caches_forward: bool = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Each forward records its pass; each backward checks that its cache is that pass's.
        for name, track in (("forward", track_forward), ("backward", track_backward),
                            ("backward_params", track_backward)):
            if name in cls.__dict__:
                setattr(cls, name, track(cls.__dict__[name]))

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------
    def __setattr__(self, name: str, value: object) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning "
                f"attribute {name!r}."
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if name in self._buffers and V.array_namespace(value) is None:
            del self._buffers[name]  # a buffer stays registered while it holds an array
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register a non-trainable array saved in ``state_dict`` (e.g. ``running_mean``)."""
        object.__setattr__(self, name, value)
        self._buffers[name] = None  # the value lives on the attribute; this keeps the order

    # -- the protocol ------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x).")

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dy).")

    def backward_params(self, dy: np.ndarray) -> None:
        """Accumulate the parameter gradients of ``backward(dy)``, without the input's delta.

        For a module whose input is data (the first layer of a network), nothing uses the delta
        of its input; PyTorch likewise skips the gradient of a tensor that does not require one.
        Layers whose input delta costs real work (``Conv``, ``Linear``, ``Sequential``) skip
        it; every other module runs :meth:`backward` and drops the result. The parameter
        gradients are the same as ``backward(dy)``'s.
        """
        self.backward(dy)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # -- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter once, under its first name: a :class:`Parameter` shared by two
        layers (weight sharing) is one parameter, as in PyTorch, so an optimizer updates it
        once. ``state_dict`` still saves it under each name, as PyTorch does."""
        seen: set[int] = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(mod, name)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> Module:
        mode = V.flag(mode, "mode", "train")
        for _, mod in self.named_modules():
            object.__setattr__(mod, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def astype(self, dtype: type | np.dtype) -> Module:
        """Cast every floating parameter and buffer to ``dtype`` (float32 or float64), in place.

        Gradients are reset to zeros of the new dtype; integer buffers (e.g. BatchNorm's
        ``num_batches_tracked``) keep their dtype, as in PyTorch.
        """
        dt = V.float_dtype(dtype, "astype")
        for p in self.parameters():
            p.data = p.data.astype(dt)
            p.grad = np.zeros_like(p.data)
        for _, mod in self.named_modules():
            for name in mod._buffers:
                value = getattr(mod, name)
                if np.issubdtype(value.dtype, np.floating):
                    object.__setattr__(mod, name, value.astype(dt))
        return self

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, named as PyTorch names them."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                out[pre + name] = p.data.copy()
            for name in mod._buffers:
                out[pre + name] = np.array(getattr(mod, name), copy=True)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters and buffers.

        Every problem is collected first and reported together in one :class:`StateDictError`:
        missing keys, unexpected keys (when ``strict``), shape mismatches and dtype mismatches.
        Weights of the wrong dtype are listed, never cast: a floating entry must have the dtype
        of its parameter or buffer (cast the model with :meth:`astype`, or the arrays, first).
        An integer buffer (BatchNorm's ``num_batches_tracked``, int64) takes any integer array
        whose values fit, as PyTorch's ``copy_`` does; a floating or other array is listed.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"load_state_dict expects a mapping of names to arrays (e.g. model.state_dict() "
                f"or safetensors' load_file), got {type(state).__name__}."
            )
        # Every value through the array seam, as Optimizer.load_state_dict: a torch tensor or
        # a memoryview is refused with the conversion to make, never converted silently.
        where = f"{type(self).__name__}.load_state_dict"
        state = {k: V.as_array(v, f"state[{k!r}]", where, convert="np.asarray(value)")
                 for k, v in state.items()}
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [
            f"{k}: expected shape {own[k].shape}, got {np.shape(state[k])}"
            for k in own if k in state and np.shape(state[k]) != own[k].shape
        ]
        kinds = [msg for k in own if k in state
                 if (msg := _dtype_problem(k, np.asarray(state[k]), own[k].dtype))]
        problems = []
        if missing:
            problems.append("missing keys: " + ", ".join(missing))
        if unexpected and strict:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if shapes:
            problems.append("shape mismatches: " + "; ".join(shapes))
        if kinds:
            problems.append("wrong dtypes: " + "; ".join(kinds))
        if problems:
            fix = "Check that the checkpoint was saved from the same model and configuration"
            if kinds:
                # The file's floating dtype, when it is one the model can take.
                found = {np.asarray(state[k]).dtype for k in own if k in state
                         and np.issubdtype(own[k].dtype, np.floating)}
                to = (f"np.{found.pop()}" if len(found) == 1 and found <= {
                    np.dtype(np.float32), np.dtype(np.float64)} else "np.float32 or np.float64")
                fix += (f". For the dtypes: cast the model first (model.astype({to})), or cast "
                        "the arrays ({k: v.astype(np.float32) for k, v in state.items()}); "
                        "rot180 never casts weights silently")
            raise StateDictError(
                f"Cannot load state into {type(self).__name__}: " + " | ".join(problems)
                + f". {fix}."
            )
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                p.data = np.array(state[pre + name], dtype=p.data.dtype, copy=True)
                if p.grad.shape != p.data.shape:
                    p.grad = np.zeros_like(p.data)
            for name in mod._buffers:
                old = getattr(mod, name)
                object.__setattr__(mod, name,
                                   np.array(state[pre + name], dtype=old.dtype, copy=True))

    # -- display -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                sub = repr(child).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {sub}")
            lines.append("\n")
        return "".join(lines) + ")"


def _dtype_problem(key: str, value: np.ndarray, want: np.dtype) -> str | None:
    """Why ``value`` cannot be loaded into an entry of dtype ``want``, or ``None``.

    Floating entries (parameters, running statistics) must match exactly: a float64 file in a
    float32 model would lose precision and a float16 one would look like float32 weights, so
    neither is cast. Integer buffers follow PyTorch, which copies any integer tensor into an
    int64 buffer; only the range is checked, so that no count wraps around.
    """
    got = value.dtype
    if np.issubdtype(want, np.integer):
        if not np.issubdtype(got, np.integer):
            return f"{key}: expected an integer array ({want} buffer), got dtype {got}"
        info = np.iinfo(want)
        if value.size and (int(value.min()) < info.min or int(value.max()) > info.max):
            return f"{key}: values {int(value.min())}..{int(value.max())} do not fit {want}"
        return None
    if not (np.issubdtype(got, np.floating) or np.issubdtype(got, np.integer)):
        return f"{key}: expected a real number array of dtype {want}, got dtype {got}"
    if got != want:
        return f"{key}: expected dtype {want}, got {got}"
    return None
