"""Read a pickle stream as *data*, for the CIFAR-10 python batches, without unpickling it.

The CIFAR-10 "python version" batches are pickles (Python 2 ``cPickle``, protocol 2) of a dict
``{"batch_label": str, "labels": [int, ...], "data": numpy uint8 array, "filenames": [str]}``.
Loading a pickle runs whatever callables the stream names, so this module never calls
:mod:`pickle`. It walks the opcodes itself and accepts only:

* plain data: ints, floats, ``None``/``True``/``False``, byte and text strings, tuples, lists,
  dicts, the memo (``PUT``/``GET``), ``MARK``, ``PROTO``, ``FRAME``, ``STOP``;
* four names for ``GLOBAL``/``STACK_GLOBAL``: ``numpy[._]core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (how Python 3 spells bytes in
  protocol 2). ``REDUCE`` and ``BUILD`` on them are interpreted here, as data: an array is
  ``np.frombuffer`` of its raw bytes with a checked numeric dtype and shape. No callable from
  the stream is ever invoked.

Any other opcode or name raises :class:`~rot180.data.errors.DataError` naming it and its byte
offset. Every length is checked against the bytes that remain before anything is sliced. The
reader is a loop (no recursion); the value it builds is bounded in depth (:data:`MAX_DEPTH`)
and in size counted with every memo reference expanded (:data:`MAX_ITEMS`), so a few hundred
bytes cannot ask for 2**40 items.
"""

from __future__ import annotations

import io
import math
import reprlib
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from .errors import DataError

__all__ = ["parse_pickle_data", "parse_pickle_stream"]

_ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct")}
_ALLOWED_DTYPES = {"b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"}


class _Global:
    """A whitelisted name from the stream: a tag, never a Python callable."""

    def __init__(self, module: str, name: str) -> None:
        self.key = (module, name)


class _ArrayStub:
    """``_reconstruct(ndarray, (0,), b"b")``: an array whose contents come with ``BUILD``."""

    value: np.ndarray | None = None


class _DtypeStub:
    def __init__(self, code: str) -> None:
        self.code = code
        self.order = "|"


#: Strings at least this long are read into a ``bytearray`` that an array then uses in place
#: (no copy); shorter ones are ``bytes``. Reads go in steps of :data:`_STEP`, so a length the
#: stream claims but does not hold allocates no more than the bytes that are really there.
_LARGE = 1 << 20
_STEP = 16 << 20


class _Reader:
    def __init__(self, stream: BinaryIO, source: str, limit: int,
                 on_array: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.stream, self.source, self.limit, self.pos = stream, source, limit, 0
        self.on_array = on_array
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    def fail(self, what: str, at: int | None = None) -> DataError:
        at = self.pos if at is None else at
        return DataError(f"{self.source}: {what} (at byte {at}). Only plain data and numpy "
                         "arrays are read from pickle streams; nothing is executed.")

    def take(self, n: int) -> bytes | bytearray:
        if n < 0:
            raise self.fail(f"negative length {n}")
        if self.pos + n > self.limit:
            raise self.fail(f"truncated: {n} bytes needed, {self.limit - self.pos} left")
        if n < _LARGE:
            chunk: bytes | bytearray = self.stream.read(n)
        else:
            chunk = bytearray()
            while len(chunk) < n:
                part = self.stream.read(min(_STEP, n - len(chunk)))
                if not part:
                    break
                chunk += part
        if len(chunk) != n:
            raise self.fail(f"truncated: {n} bytes needed, {len(chunk)} left")
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self) -> str:
        text = bytearray()
        while not text.endswith(b"\n"):
            if len(text) > 255 or self.pos >= self.limit:   # a module or name is short
                raise self.fail("truncated: unterminated GLOBAL name")
            byte = self.stream.read(1)
            if not byte:
                raise self.fail("truncated: unterminated GLOBAL name")
            text += byte
            self.pos += 1
        return text[:-1].decode("ascii", errors="replace")

    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.fail("stack underflow: malformed stream")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.fail("MARK expected: malformed stream")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self, kind: type, op: str) -> Any:
        if not self.stack or not isinstance(self.stack[-1], kind):
            raise self.fail(f"{op} needs a {kind.__name__} on the stack")
        return self.stack[-1]

    def lookup_global(self, module: str, name: str, at: int) -> _Global:
        key = (module, name)
        if key in _ARRAY_GLOBALS or key in {("numpy", "ndarray"), ("numpy", "dtype"),
                                             ("_codecs", "encode")}:
            return _Global(module, name)
        raise self.fail(f"refusing to load the global {module}.{name}", at)

    # -- REDUCE and BUILD on the whitelisted names, interpreted as data -------------------
    def reduce(self, func: Any, args: Any, at: int) -> Any:
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise self.fail("REDUCE on something other than a whitelisted name", at)
        if func.key in _ARRAY_GLOBALS:
            return _ArrayStub()
        if func.key == ("numpy", "dtype") and args and isinstance(args[0], str | bytes):
            return _DtypeStub(_ascii(args[0]))
        if func.key == ("_codecs", "encode") and len(args) == 2 and isinstance(args[0], str) \
                and args[1] in ("latin1", "latin-1"):
            return args[0].encode("latin-1")
        raise self.fail(f"unexpected call {'.'.join(func.key)}{reprlib.repr(args)}", at)

    def build(self, obj: Any, state: Any, at: int) -> None:
        if isinstance(obj, _DtypeStub) and isinstance(state, tuple) and len(state) >= 2 \
                and isinstance(state[1], str | bytes):
            obj.order = _ascii(state[1])
        elif isinstance(obj, _ArrayStub) and isinstance(state, tuple) and len(state) == 5:
            value = self.array(*state[1:], at=at)
            obj.value = value if self.on_array is None else self.on_array(value)
        else:
            raise self.fail(f"BUILD on {type(obj).__name__} is not supported", at)

    def array(self, shape: Any, dtype: Any, fortran: Any, raw: Any, *, at: int) -> np.ndarray:
        if not isinstance(dtype, _DtypeStub):
            raise self.fail("array state without a dtype", at)
        code = dtype.code.lstrip("<>|=")
        if code not in _ALLOWED_DTYPES or dtype.order not in ("<", ">", "|", "="):
            raise self.fail(f"unsupported array dtype {dtype.code!r} (byte order "
                            f"{dtype.order!r})", at)
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise self.fail(f"bad array shape {shape!r}", at)
        if isinstance(raw, str):  # Python 2 pickles decoded as text
            raw = raw.encode("latin-1")
        if not isinstance(raw, bytes | bytearray):
            raise self.fail("array data is not a byte string", at)
        dt = np.dtype(code).newbyteorder("<" if dtype.order == "|" else dtype.order)
        if len(raw) != math.prod(shape) * dt.itemsize:
            raise self.fail(f"array data has {len(raw)} bytes, shape {shape} of {dt.name} "
                            f"needs {math.prod(shape) * dt.itemsize}", at)
        if len(shape) > MAX_DEPTH // 2:   # numpy allows 64 axes; an image batch has 2-4
            raise self.fail(f"array of {len(shape)} axes (shape {shape})", at)
        flat = np.frombuffer(raw, dtype=dt)
        try:
            out = flat.reshape(shape, order="F" if fortran else "C")
        except ValueError as exc:   # e.g. (0, 2**70): no bytes, but an axis numpy cannot hold
            raise self.fail(f"bad array shape {shape!r} ({exc})", at) from None
        out = out.astype(dt.newbyteorder("="), copy=False)   # a bytearray's data: used in place
        return out if out.flags.writeable else out.copy()

    def run(self) -> Any:
        while True:
            at = self.pos
            op = self.take(1)
            if op == b".":  # STOP
                return _finish(self.pop(), self.source)
            handler = _OPS.get(op)
            if handler is None:
                raise self.fail(f"unsupported pickle opcode {op!r}", at)
            handler(self, at)
            if len(self.stack) > MAX_STACK:
                raise self.fail(f"more than {MAX_STACK:,} values on the stack at once (a data "
                                "batch holds a few: a dict, its keys, one array, the labels)", at)


def _ascii(text: str | bytes) -> str:
    """Python 2 pickles give dtype codes as byte strings, Python 3 ones as text."""
    return text.decode("latin-1") if isinstance(text, bytes) else text


def _put(r: _Reader, index: int) -> None:
    if not r.stack:
        raise r.fail("PUT on an empty stack")
    r.memo[index] = r.stack[-1]


def _get(r: _Reader, index: int) -> None:
    if index not in r.memo:
        raise r.fail(f"memo key {index} was never stored")
    r.stack.append(r.memo[index])


def _popped(r: _Reader, n: int) -> list[Any]:
    """The top ``n`` items, in stream order."""
    return list(reversed([r.pop() for _ in range(n)]))


def _tuple(r: _Reader, n: int) -> None:
    r.stack.append(tuple(_popped(r, n)))


def _append(r: _Reader, items: list[Any]) -> None:
    r.top(list, "APPEND").extend(items)


def _setitems(r: _Reader, items: list[Any]) -> None:
    target = r.top(dict, "SETITEMS")
    if len(items) % 2:
        raise r.fail("SETITEMS with an odd number of items")
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, str | bytes | int | tuple):
            raise r.fail(f"dict key of type {type(key).__name__}")
        # Hashing a tuple walks it: one of scalars only, so that a shared, nested one cannot
        # make a hash take 2**depth steps.
        inner = next((v for v in key if not isinstance(v, _SCALARS)), None) \
            if isinstance(key, tuple) else None
        if inner is not None:
            raise r.fail(f"unhashable dict key (a tuple holding a {type(inner).__name__}); "
                         "tuple keys may hold numbers and strings only")
        target[key] = value


_SCALARS = (str, bytes, int, float, type(None))


def _long1(r: _Reader) -> int:
    return int.from_bytes(r.take(r.unpack("<B")), "little", signed=True)


def _stack_global(r: _Reader, at: int) -> None:
    name, module = r.pop(), r.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise r.fail("STACK_GLOBAL needs two strings", at)
    r.stack.append(r.lookup_global(module, name, at))


def _reduce(r: _Reader, at: int) -> None:
    args = r.pop()
    r.stack.append(r.reduce(r.pop(), args, at))


def _build(r: _Reader, at: int) -> None:
    state = r.pop()
    if not r.stack:
        raise r.fail("BUILD on an empty stack", at)
    r.build(r.stack[-1], state, at)


_OPS: dict[bytes, Any] = {
    b"\x80": lambda r, at: r.take(1),                                       # PROTO
    b"\x95": lambda r, at: r.take(8),                                       # FRAME
    b"(": lambda r, at: r.marks.append(len(r.stack)),                       # MARK
    b"}": lambda r, at: r.stack.append({}),                                 # EMPTY_DICT
    b"]": lambda r, at: r.stack.append([]),                                 # EMPTY_LIST
    b")": lambda r, at: r.stack.append(()),                                 # EMPTY_TUPLE
    b"t": lambda r, at: r.stack.append(tuple(r.pop_mark())),                # TUPLE
    b"\x85": lambda r, at: _tuple(r, 1),                                     # TUPLE1
    b"\x86": lambda r, at: _tuple(r, 2),                                     # TUPLE2
    b"\x87": lambda r, at: _tuple(r, 3),                                     # TUPLE3
    b"a": lambda r, at: _append(r, [r.pop()]),                              # APPEND
    b"e": lambda r, at: _append(r, r.pop_mark()),                           # APPENDS
    b"s": lambda r, at: _setitems(r, _popped(r, 2)),                        # SETITEM
    b"u": lambda r, at: _setitems(r, r.pop_mark()),                         # SETITEMS
    b"q": lambda r, at: _put(r, r.unpack("<B")),                            # BINPUT
    b"r": lambda r, at: _put(r, r.unpack("<I")),                            # LONG_BINPUT
    b"\x94": lambda r, at: _put(r, len(r.memo)),                            # MEMOIZE
    b"h": lambda r, at: _get(r, r.unpack("<B")),                            # BINGET
    b"j": lambda r, at: _get(r, r.unpack("<I")),                            # LONG_BINGET
    b"J": lambda r, at: r.stack.append(r.unpack("<i")),                     # BININT
    b"K": lambda r, at: r.stack.append(r.unpack("<B")),                     # BININT1
    b"M": lambda r, at: r.stack.append(r.unpack("<H")),                     # BININT2
    b"\x8a": lambda r, at: r.stack.append(_long1(r)),                       # LONG1
    b"G": lambda r, at: r.stack.append(r.unpack(">d")),                     # BINFLOAT
    b"N": lambda r, at: r.stack.append(None),                               # NONE
    b"\x88": lambda r, at: r.stack.append(True),                            # NEWTRUE
    b"\x89": lambda r, at: r.stack.append(False),                           # NEWFALSE
    b"U": lambda r, at: r.stack.append(r.take(r.unpack("<B"))),             # SHORT_BINSTRING
    b"T": lambda r, at: r.stack.append(r.take(r.unpack("<i"))),             # BINSTRING
    b"C": lambda r, at: r.stack.append(r.take(r.unpack("<B"))),             # SHORT_BINBYTES
    b"B": lambda r, at: r.stack.append(r.take(r.unpack("<I"))),             # BINBYTES
    b"X": lambda r, at: r.stack.append(_text(r, r.unpack("<I"))),           # BINUNICODE
    b"\x8c": lambda r, at: r.stack.append(_text(r, r.unpack("<B"))),        # SHORT_BINUNICODE
    b"c": lambda r, at: r.stack.append(r.lookup_global(r.line(), r.line(), at)),  # GLOBAL
    b"\x93": _stack_global,                                                 # STACK_GLOBAL
    b"R": _reduce,                                                          # REDUCE
    b"b": _build,                                                           # BUILD
}


def _text(r: _Reader, n: int) -> str:
    at = r.pos
    try:
        return r.take(n).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise r.fail(f"invalid UTF-8 text ({exc.reason})", at) from exc


#: Most items the decoded value may hold, counting a container each time it is reached: the
#: memo lets a few bytes name a list twice, then that pair twice, 40 levels deep (2**40 items
#: from 200 bytes). A CIFAR-10 batch holds about 20,000 (two lists of 10,000 and an array).
MAX_ITEMS = 10_000_000
#: Values on the reader's stack at once (CIFAR's label list: 10,000 between a MARK and APPENDS).
MAX_STACK = 1_000_000
#: Deepest nesting of containers accepted; a CIFAR-10 batch is 2 deep (a dict of lists).
MAX_DEPTH = 100


def _finish(obj: Any, source: str) -> Any:
    """Replace array stubs by their arrays through lists, tuples and dicts, within bounds.

    Each container is converted once (by identity), so the work is linear in the stream even
    when the memo shares containers; the value's size as a tree (every path counted) is summed
    on the way and refused beyond :data:`MAX_ITEMS`, nesting beyond :data:`MAX_DEPTH`, and a
    container that holds itself.
    """
    done: dict[int, tuple[Any, int]] = {}   # id -> (converted, items in its tree)
    open_ids: set[int] = set()

    def convert(node: Any, depth: int) -> tuple[Any, int]:
        if isinstance(node, _ArrayStub):
            if node.value is None:
                raise DataError(f"{source}: an array was never given its contents (no BUILD).")
            return node.value, 1
        if isinstance(node, _Global | _DtypeStub):
            raise DataError(f"{source}: a bare {type(node).__name__.strip('_')} is not data.")
        if isinstance(node, bytearray):   # a long string outside an array (see _LARGE)
            return bytes(node), 1
        if not isinstance(node, list | tuple | dict):
            return node, 1
        key = id(node)
        if key in done:
            return done[key]
        if key in open_ids:  # a container that holds itself (built with the memo)
            raise DataError(f"{source}: a self-referencing container is not plain data.")
        if depth >= MAX_DEPTH:
            raise DataError(f"{source}: containers nested more than {MAX_DEPTH} deep; a data "
                            "file is a few levels deep. This is not a data file.")
        open_ids.add(key)
        total = 1
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        out: dict[Any, Any] = {}
        for k, v in pairs:
            out[k], items = convert(v, depth + 1)
            total += items
            if total > MAX_ITEMS:
                raise DataError(f"{source}: the data holds more than {MAX_ITEMS:,} items once "
                                "its shared parts (memo references) are expanded; a data file "
                                "is far smaller. The stream is built to exhaust memory.")
        open_ids.discard(key)
        value: Any = out if isinstance(node, dict) else list(out.values())
        done[key] = (value if not isinstance(node, tuple) else tuple(value)), total
        return done[key]

    return convert(obj, 0)[0]


def parse_pickle_data(data: bytes, *, source: str = "<bytes>") -> Any:
    """Decode a pickle stream made only of plain data and numpy arrays, without executing it.

    Byte strings come back as ``bytes`` (Python 2 ``str`` included), text as ``str``; arrays
    as writable numpy arrays in native byte order.

    Raises
    ------
    DataError
        On any opcode or global outside the subset described in the module docstring, on a
        truncated or malformed stream, and on bytes after ``STOP``.
    """
    data = bytes(data)
    reader = _Reader(io.BytesIO(data), source, len(data))
    result = reader.run()
    if reader.pos != len(data):
        raise reader.fail(f"{len(data) - reader.pos} unexpected bytes after STOP")
    return result


def parse_pickle_stream(stream: BinaryIO, *, source: str, max_bytes: int,
                        on_array: Callable[[np.ndarray], np.ndarray] | None = None) -> Any:
    """:func:`parse_pickle_data` on a stream (a file, a :class:`gzip.GzipFile`), read as it goes.

    At most ``max_bytes`` are read; a string's bytes are read in bounded steps, so a claimed
    length larger than what the stream holds costs no more memory than what it holds. A large
    array is built on the bytes it was read into (no second copy), and ``on_array``, when
    given, replaces each array as soon as it is complete (e.g. a float32 image array by its
    uint8 pixels), so the float copy is freed before the next array is read.

    Raises
    ------
    DataError
        As :func:`parse_pickle_data`; also when the stream holds more than ``max_bytes`` or
        anything after ``STOP``.
    """
    reader = _Reader(stream, source, max_bytes, on_array)
    result = reader.run()
    if stream.read(1):
        raise reader.fail("unexpected bytes after STOP")
    return result
