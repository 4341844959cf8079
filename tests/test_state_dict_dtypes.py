"""``load_state_dict``: weights of the wrong dtype are listed, not cast (issue 11, item 8).

Before, every entry was cast to the parameter's dtype: float64, float16 and integer weights
loaded into a float32 model without a word. Integer buffers (BatchNorm's
``num_batches_tracked``) keep PyTorch's rule: any integer array that fits.
"""

from __future__ import annotations

import numpy as np
import pytest

from rot180.models import lenet5
from rot180.nn import BatchNorm2d, Conv2d, Linear, Sequential, StateDictError
from rot180.train.checkpoint import load_checkpoint, save_checkpoint


def net() -> Sequential:
    return Sequential(Conv2d(1, 2, 3, rng=0), BatchNorm2d(2), Linear(4, 3, rng=1))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64, np.int32])
def test_a_weight_of_another_dtype_is_listed_not_cast(dtype) -> None:
    model = net()
    before = model.state_dict()
    state = dict(before)
    state["0.weight"] = np.ones_like(state["0.weight"], dtype=dtype)
    with pytest.raises(StateDictError,
                       match=rf"wrong dtypes: 0\.weight: expected dtype float32, got "
                             rf"{np.dtype(dtype)}\. .*model\.astype\(.*rot180 never casts"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():       # nothing was loaded
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_the_fix_names_the_files_dtype() -> None:
    state = {k: (v.astype(np.float64) if v.dtype == np.float32 else v)
             for k, v in net().state_dict().items()}
    with pytest.raises(StateDictError, match=r"model\.astype\(np\.float64\)") as info:
        net().load_state_dict(state)
    msg = str(info.value)
    assert "1.running_mean: expected dtype float32, got float64" in msg   # buffers too
    assert "num_batches_tracked" not in msg                               # int stays int
    net().astype(np.float64).load_state_dict(state)                       # the fix works


def test_dtypes_are_listed_with_the_other_problems() -> None:
    state = net().state_dict()
    del state["0.bias"]
    state["extra"] = np.zeros(1, np.float32)
    state["2.weight"] = np.zeros((5, 5), np.float32)
    state["2.bias"] = state["2.bias"].astype(np.float16)
    with pytest.raises(StateDictError, match=r"missing keys: 0\.bias \| unexpected keys: extra "
                                             r"\| shape mismatches: 2\.weight: .* \| wrong "
                                             r"dtypes: 2\.bias: expected dtype float32, got "
                                             r"float16"):
        net().load_state_dict(state)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64])
def test_integer_buffers_take_any_integer_that_fits(dtype) -> None:
    state = net().state_dict()
    state["1.num_batches_tracked"] = np.array(7, dtype)
    model = net()
    model.load_state_dict(state)
    assert model[1].num_batches_tracked.dtype == np.int64
    assert int(model[1].num_batches_tracked) == 7


@pytest.mark.parametrize(("value", "match"), [
    (np.array(7.0, np.float32), r"1\.num_batches_tracked: expected an integer array \(int64 "
                                r"buffer\), got dtype float32"),
    (np.array(True), r"expected an integer array \(int64 buffer\), got dtype bool"),
    (np.array(2 ** 64 - 1, np.uint64), r"values 18446744073709551615\.\.18446744073709551615 "
                                       r"do not fit int64"),
])
def test_integer_buffers_refuse_other_kinds_and_overflow(value, match) -> None:
    state = net().state_dict()
    state["1.num_batches_tracked"] = value
    with pytest.raises(StateDictError, match=match):
        net().load_state_dict(state)


def test_checkpoint_loader_casts_the_model_to_the_files_dtype_first(tmp_path) -> None:
    """The loader's rule keeps working: a float64 run's checkpoint rebuilds a float64 model."""
    model = lenet5().astype(np.float64)
    save_checkpoint(tmp_path / "f64.safetensors", model, model="lenet5")
    again = load_checkpoint(tmp_path / "f64.safetensors").build_model()
    assert all(p.dtype == np.float64 for p in again.parameters())
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(),
                              strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
