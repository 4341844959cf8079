"""One forward pass, one cache per layer: refuse a module whose cache a second use overwrites.

Every layer keeps what its backward rule needs from its *last* forward in one slot (``_x``,
``_cache``, ...). A module that runs twice in one pass (one ``Linear`` twice in a
``Sequential``, one module inside two containers of a model, a ``Residual`` branch that reuses a
layer of the trunk, or a custom ``forward`` that calls a child twice) overwrites the first use's
cache with the second's, and the backward of the first use then reads the wrong input: the
parameter gradients are silently wrong (``Sequential(lin, ReLU(), lin)``: ``dW`` off by 1.2 on a
4x4 layer against PyTorch). The same happens when two models share a module and run forward
one after the other before the first one's backward.

A cache stack per call would make these uses correct but would grow without bound on every
forward that no backward follows (evaluation, prediction), so rot180 refuses them instead, at the
call that would corrupt the cache, with the module's positions and the fix. Weight sharing stays
possible, the PyTorch way round: two layers holding the same :class:`~rot180.nn.Parameter`
objects each cache their own input and accumulate (``+=``) into the one shared ``grad``, and
``parameters()`` yields a shared parameter once.

How: ``Module.__init_subclass__`` wraps every ``forward``, ``backward`` and ``backward_params``
a subclass defines.

* The outermost ``forward`` of a thread opens a *pass* (a fresh number) and names the module
  that opened it, the root; every module whose forward runs inside it records the pass number.
  A module already recorded in the open pass is refused (``super().forward`` of a subclass is
  the same use, not a second one).
* The outermost ``backward`` (or ``backward_params``) reads the pass its module last ran
  forward in; every module whose backward runs inside it must have run forward in that same
  pass, else its cache belongs to another call (another model's pass, or a direct call) and it
  is refused.

Modules whose forward caches nothing (``Identity``) set ``_caches_forward = False`` and are
never refused. The bookkeeping is a few set operations per layer call, O(1), independent of
the arrays.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..functional._parallel import held

if TYPE_CHECKING:
    from .module import Module

__all__ = ["track_forward", "track_backward"]

_FIX = ("Give each position its own layer (copy.deepcopy(layer)). To share weights, share the "
        "parameters instead: copy = copy.deepcopy(layer); copy.weight = layer.weight (and "
        "copy.bias = layer.bias); each layer then caches its own input and both accumulate into "
        "the one gradient, as a module used twice does in PyTorch.")

_numbers = itertools.count(1)
_FAILED = 0     # the pass "number" of a module whose last forward raised (real passes are >= 1)


class _State(threading.local):
    """The pass open in this thread: its number, its root, the modules used in it."""

    def __init__(self) -> None:
        self.number = 0
        self.root: Module | None = None
        self.used: set[int] = set()
        self.active: set[int] = set()       # modules whose forward is on the call stack
        self.backward_root: Module | None = None


_STATE = _State()


def _positions(root: Module, module: Module) -> list[str]:
    """Every name ``module`` has in ``root``'s tree (``named_modules`` lists each position)."""
    return [repr(name) if name else "the root" for name, m in root.named_modules()
            if m is module]


def _used_twice(module: Module, root: Module) -> ValueError:
    name = type(module).__name__
    where = _positions(root, module)
    if len(where) >= 2:
        place = "at " + " and ".join(where)
    elif where:
        place = f"at {where[0]}, whose parent's forward calls it twice"
    else:
        place = "called twice from inside its forward, outside the model's registered modules"
    return ValueError(
        f"{name} is used twice in one forward pass of {type(root).__name__}: {place}. Each "
        "layer caches what its backward needs from its last forward, so the second use would "
        "overwrite the first's and the gradients would be silently wrong. " + _FIX
    )


def _stale(module: Module, root: Module, method: str) -> ValueError:
    name = type(module).__name__
    where = _positions(root, module)
    place = f" at {where[0]}" if where else ""
    return ValueError(
        f"{type(root).__name__}.{method}: its {name}{place} ran forward again outside this "
        f"{type(root).__name__}'s last forward (in another model that shares it, or called "
        "directly), so its cache holds that other call's input and the gradients would be "
        f"wrong. Run forward again before {method}, or give each model its own layer. " + _FIX
    )


def _incomplete(module: Module, root: Module, method: str) -> ValueError:
    where = _positions(root, module) if root is not module else []
    place = f" (its {type(module).__name__} at {where[0]})" if where else ""
    return ValueError(
        f"{type(root).__name__}.{method}: the last forward{place} raised an error before it "
        "finished, so the layers' caches mix that call's inputs with an earlier call's and the "
        f"gradients would be wrong. Run forward again, to the end, before {method}."
    )


def track_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` recording its pass, refusing a second use of the module in one pass."""
    if getattr(forward, "_rot180_tracked", False):
        return forward

    @functools.wraps(forward)
    def tracked(self: Module, *args: Any, **kwargs: Any) -> Any:
        state, key = _STATE, id(self)
        if key in state.active:                # super().forward(): the same use
            return forward(self, *args, **kwargs)
        outer = state.root is None
        if outer:
            state.number, state.root, state.used = next(_numbers), self, set()
        elif key in state.used and self._caches_forward:
            raise _used_twice(self, state.root)  # type: ignore[arg-type]
        state.used.add(key)
        state.active.add(key)
        self.__dict__["_forward_pass"] = state.number
        try:
            if outer:       # numpy's BLAS at one thread once for the whole pass, not per call
                with held():
                    return forward(self, *args, **kwargs)
            return forward(self, *args, **kwargs)
        except BaseException:
            # Its layers' caches now mix this call's inputs (those that ran) with an earlier
            # call's (those that did not): no backward may read them.
            self.__dict__["_forward_pass"] = _FAILED
            raise
        finally:
            state.active.discard(key)
            if outer:
                state.root, state.used = None, set()

    tracked._rot180_tracked = True  # type: ignore[attr-defined]
    return tracked


def track_backward(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` (or ``backward_params``) refusing a module whose cache is another pass's."""
    if getattr(backward, "_rot180_tracked", False):
        return backward

    @functools.wraps(backward)
    def tracked(self: Module, *args: Any, **kwargs: Any) -> Any:
        state = _STATE
        root = state.backward_root
        if self.__dict__.get("_forward_pass") == _FAILED:
            raise _incomplete(self, root or self, backward.__name__)
        if root is None:
            state.backward_root = self
            try:
                with held():            # as the forward pass: one set and restore
                    return backward(self, *args, **kwargs)
            finally:
                state.backward_root = None
        mine, theirs = self.__dict__.get("_forward_pass"), root.__dict__.get("_forward_pass")
        # None: never ran forward; the layer's own "backward called before forward" says so.
        if self._caches_forward and None not in (mine, theirs) and mine != theirs:
            raise _stale(self, root, backward.__name__)
        return backward(self, *args, **kwargs)

    tracked._rot180_tracked = True  # type: ignore[attr-defined]
    return tracked
