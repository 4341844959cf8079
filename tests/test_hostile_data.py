"""Hostile data files end fast with a DataError naming the file (issue 11, item 8).

FIFOs and devices where a data file should be, files larger than their format ever is, a gzip
bomb behind an IDX header, and pickle streams of a few hundred bytes that ask for 2**40 items
or 100,000 levels. Each stream is written here byte by byte from the pickle opcodes (nothing is
ever unpickled). Images: tests/test_images.py.
"""

from __future__ import annotations

import gzip
import os
import pickle  # used only to *write* test streams (dumps); nothing is ever loaded with it
import struct
import time
import tracemalloc

import numpy as np
import pytest

from rot180.data import (
    DataError,
    load_idx_pair,
    load_images,
    parse_cifar_python,
    read_cifar_binary,
    read_cifar_python,
    read_idx,
)
from rot180.data._pickle_subset import MAX_DEPTH, MAX_ITEMS, parse_pickle_data
from rot180.data.cifar import MAX_BATCH_BYTES
from rot180.data.idx import MAX_IDX_BYTES

READERS = [read_idx, read_cifar_binary, read_cifar_python]


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_a_fifo_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "data_batch_1"
    os.mkfifo(fifo)               # opening it for reading the usual way blocks forever
    with pytest.raises(DataError, match=r"data_batch_1: is a FIFO \(named pipe\), not a "
                                        r"regular file"):
        reader(fifo)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_a_device_is_refused_before_a_byte_is_read(reader, device):
    with pytest.raises(DataError, match=rf"{device}: is a character device, not a regular"):
        reader(device)


@pytest.mark.parametrize(("reader", "limit"), [(read_idx, MAX_IDX_BYTES),
                                               (read_cifar_binary, MAX_BATCH_BYTES),
                                               (read_cifar_python, MAX_BATCH_BYTES)],
                         ids=["idx", "cifar-bin", "cifar-py"])
def test_a_file_larger_than_its_format_is_refused_unread(tmp_path, reader, limit):
    big = tmp_path / "huge"
    with big.open("wb") as f:
        f.truncate(limit + 1)     # sparse: nothing is written, the size is what is checked
    with pytest.raises(DataError, match=rf"huge: is {limit + 1:,} bytes, more than any data "
                                        rf"file this reader accepts \({limit:,} bytes\)"):
        reader(big)


def _idx_header(*shape: int) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def test_gzip_bomb_behind_an_idx_header_stops_at_the_announced_size(tmp_path):
    """30 announced bytes, 64 MiB of zeros behind them (64 KiB compressed)."""
    bomb = tmp_path / "train-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(_idx_header(2, 3, 5) + bytes(64 * 2**20), compresslevel=9))
    assert bomb.stat().st_size < 2**17
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"idx1-ubyte\.gz: the gzip data expands beyond the "
                                            r"46 bytes its header announces \(2x3x5 uint8"):
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20      # the whole expansion would be 64 MiB


def test_idx_header_announcing_more_than_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_header(65536, 65536, 2) + bytes(100)))
    with pytest.raises(DataError, match=r"65536x65536x2 uint8 = 8589934592 data bytes, more "
                                        r"than the 1,073,741,824 bytes read"):
        read_idx(path)


def test_gzip_of_a_good_idx_file_still_reads(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "i.gz").write_bytes(gzip.compress(_idx_header(2, 3, 4) + images.tobytes()))
    (tmp_path / "l.gz").write_bytes(gzip.compress(_idx_header(2) + bytes([3, 7])))
    x, y = load_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz")
    np.testing.assert_array_equal(x[:, 0], images)
    np.testing.assert_array_equal(y, [3, 7])


# -- pickle streams that expand ---------------------------------------------------------------

def shared_lists(levels: int) -> bytes:
    """A list holding the previous list twice, ``levels`` deep (memo GETs: 2**levels leaves)."""
    out = b"\x80\x02]q\x00"                                   # PROTO 2, [], memo 0
    for i in range(1, levels + 1):
        out += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    return out + b"."


def test_self_referencing_pickle_40_levels_is_refused_fast(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(shared_lists(40))
    assert path.stat().st_size < 400
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"data_batch_1: the data holds more than "
                                        rf"{MAX_ITEMS:,} items once its shared parts"):
        read_cifar_python(path)
    assert time.perf_counter() - start < 5


def test_shared_parts_within_the_bound_still_read():
    out = parse_pickle_data(shared_lists(3))
    assert out == [[[[], []], [[], []]], [[[], []], [[], []]]]


def test_deep_nesting_is_refused_without_recursion_error():
    deep = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    with pytest.raises(DataError, match=rf"containers nested more than {MAX_DEPTH} deep"):
        parse_pickle_data(deep, source="deep")


def test_a_shared_nested_tuple_key_is_not_hashed():
    """Hashing a tuple holding the previous one twice, 40 deep, takes 2**40 steps."""
    key = b")q\x00"
    for i in range(1, 41):
        key += b"h" + bytes([i - 1]) + b"\x86q" + bytes([i])    # (top, top again)
    stream = b"\x80\x02}" + key + b"K\x01s."
    with pytest.raises(DataError, match=r"unhashable dict key \(a tuple holding a tuple\)"):
        parse_pickle_data(stream, source="s")


@pytest.mark.parametrize(("label", "match"), [(2**100, r"record 0 has label ~2\*\*100"),
                                              (-(2**100), r"negative label -~2\*\*100")])
def test_a_label_too_large_for_int64_is_a_data_error(label, match):
    batch = {"data": np.zeros((1, 3072), np.uint8), "labels": [label]}
    with pytest.raises(DataError, match=match):
        parse_cifar_python(pickle.dumps(batch, protocol=2), source="p")


def test_a_stack_flood_is_refused_before_it_fills_memory():
    """Every EMPTY_LIST opcode lands on the stack; 2 MB of them once cost 4.5 GB for 60 MB."""
    flood = b"\x80\x02" + b"]" * 2_000_000 + b"."
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"flood: .*more than 1,000,000 values on the stack"):
            parse_pickle_data(flood, source="flood")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20


def test_an_array_of_too_many_axes_is_a_data_error():
    many = pickle.dumps(np.zeros((1,) * 60, np.uint8), protocol=2)
    with pytest.raises(DataError, match=r"array of 60 axes"):
        parse_pickle_data(many, source="many")


def test_an_image_pillow_cannot_decode_is_a_data_error_naming_it(tmp_path):
    bad = tmp_path / "bad.ppm"
    bad.write_bytes(b"P5\n2 2\n2x5\n\x00\x00\x00\x00")     # a PPM whose maxval is no number
    with pytest.raises(DataError, match=r"bad.ppm: not a readable image"):
        load_images([bad], (1, 28, 28))


def test_a_socket_or_a_symlink_loop_is_refused_with_the_path(tmp_path):
    import socket

    from rot180._files import read_regular

    sock = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        with pytest.raises(DataError, match=r"s: cannot open the data file"):
            read_regular(sock, max_bytes=10, what="data file", error=DataError)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(DataError, match=r"loop: cannot open the data file: Too many levels"):
        read_regular(tmp_path / "loop", max_bytes=10, what="data file", error=DataError)


def test_an_array_shape_numpy_cannot_hold_is_a_data_error():
    """A CIFAR-style dict whose empty array claims shape (0, 2**70) (as Python 3's pickle of
    numpy writes it, the bytes through _codecs.encode): no bytes, so the size check passed, and
    numpy's reshape said only "Maximum allowed dimension exceeded", naming no file."""
    forged = bytes.fromhex(
    "80027d710028635f636f646563730a656e636f64650a7101580400000064617461710258060000006c617469"
    "6e317103867104527105636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e73747275"
    "63740a7106636e756d70790a6e6461727261790a71074b0085710868015801000000627109680386710a5271"
    "0b87710c52710d284b014b008a0900000000000000004086710e636e756d70790a64747970650a710f580200"
    "0000753171108988877111527112284b0358010000007c71134e4e4e4affffffff4affffffff4b0074711462"
    "89635f636f646563730a656e636f64650a580000000058060000006c6174696e318652711674711762680158"
    "060000006c6162656c737118680386711952711a5d711b752e")
    with pytest.raises(DataError, match=r"huge: bad array shape \(0, 1180591620717411303424\)"):
        parse_pickle_data(forged, source="huge")
