"""A module used twice: refused where its one cache would make the gradient wrong; weights shared
through Parameters instead match PyTorch's module-used-twice (issue 11, item 2).

Every layer keeps one cache, its last forward's input, so before the guard a second use in one
forward pass overwrote the first use's cache and ``Sequential(lin, ReLU(), lin)`` gave a weight
gradient off by 1.2 against PyTorch without a word. :func:`test_one_cache_holds_only_the_last_
forward` pins that mechanism; the refusal tests below fail on the old code (nothing was raised).
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

from rot180 import nn, optim
from rot180.gradcheck import gradcheck

TOL = 1e-12
FIX = r"copy\.deepcopy\(layer\)"


def _lin(seed: int = 0) -> nn.Linear:
    return nn.Linear(4, 4, dtype=np.float64, rng=seed)


def _torch_lin(lin: nn.Linear) -> torch.nn.Linear:
    t = torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(lin.weight.data))
        t.bias.copy_(torch.from_numpy(lin.bias.data))
    return t


def _data(rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    return rng.standard_normal((3, 4)), rng.standard_normal((3, 4))


def test_one_cache_holds_only_the_last_forward() -> None:
    """Why a second use is wrong: after two forwards, backward differentiates the second one.
    This is what ``Sequential(lin, ReLU(), lin)`` silently did before it was refused."""
    lin = _lin()
    x1, dy = _data(0)
    x2, _ = _data(1)
    t = _torch_lin(lin)
    t(torch.from_numpy(x1)).backward(torch.from_numpy(dy))
    lin.forward(x1)
    lin.forward(x2)
    lin.backward(dy)
    assert np.abs(lin.weight.grad - t.weight.grad.numpy()).max() > 0.1


@pytest.mark.parametrize(("build", "where", "root"), [
    (lambda a: nn.Sequential(a, nn.ReLU(), a), "'0' and '2'", "Sequential"),
    (lambda a: nn.Sequential(nn.Sequential(a, nn.ReLU()), nn.Sequential(nn.Tanh(), a)),
     "'0.0' and '1.1'", "Sequential"),
    (lambda a: nn.Sequential(a, nn.Residual(nn.Sequential(nn.ReLU(), a))),
     "'0' and '1.block.1'", "Sequential"),
    (lambda a: nn.Residual(nn.Sequential(a, nn.ReLU()), shortcut=nn.Sequential(a)),
     "'block.0' and 'shortcut.0'", "Residual"),
    (lambda a: nn.Sequential(nn.Residual(nn.Sequential(a)), nn.Residual(nn.Sequential(a))),
     "'0.block.0' and '1.block.0'", "Sequential"),
], ids=["sequential", "nested-containers", "residual-branch-and-trunk",
        "residual-block-and-shortcut", "two-residuals"])
def test_a_module_used_twice_in_one_pass_is_refused_with_its_positions(build, where,
                                                                       root) -> None:
    model = build(_lin())
    x, _ = _data()
    with pytest.raises(ValueError, match=rf"Linear is used twice in one forward pass of {root}: "
                                         rf"at {where}\. .*{FIX}.*copy\.weight = layer\.weight"):
        model.forward(x)


def test_shared_relu_is_refused_too() -> None:
    """An activation caches its input as well: one ReLU at two places is the PyTorch habit
    that would have given the wrong mask to the first place."""
    act = nn.ReLU()
    model = nn.Sequential(_lin(0), act, _lin(1), act)
    with pytest.raises(ValueError, match=r"ReLU is used twice .* at '1' and '3'"):
        model.forward(_data()[0])


def test_a_custom_forward_calling_a_child_twice_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = _lin()

        def forward(self, x: np.ndarray) -> np.ndarray:
            return self.lin.forward(self.lin.forward(x))

    with pytest.raises(ValueError, match=r"used twice in one forward pass of Twice: at 'lin', "
                                         r"whose parent's forward calls it twice"):
        Twice().forward(_data()[0])


def test_a_refused_pass_leaves_nothing_behind() -> None:
    lin = _lin()
    x, dy = _data()
    with pytest.raises(ValueError, match="used twice"):
        nn.Sequential(lin, lin).forward(x)
    good = nn.Sequential(lin, nn.ReLU())
    good.forward(x)
    good.forward(x)                 # a new pass each time: no leftover from the refused one
    assert good.backward(dy).shape == x.shape


def test_two_models_sharing_a_module_refuse_the_stale_backward() -> None:
    """Forward of A, forward of B, backward of A: A's Linear holds B's input."""
    lin = _lin()
    a = nn.Sequential(lin, nn.ReLU())
    b = nn.Sequential(nn.Tanh(), lin)
    x, dy = _data()
    a.forward(x)
    b.forward(x)
    with pytest.raises(ValueError, match=r"Sequential\.backward: its Linear at '0' ran forward "
                                         rf"again outside .*{FIX}"):
        a.backward(dy)
    with pytest.raises(ValueError, match=r"Sequential\.backward_params: its Linear at '0'"):
        a.backward_params(dy)
    b.backward(dy)                  # B's own pass is the latest: fine
    a.forward(x)
    a.backward(dy)                  # and A again after its own forward


def test_weights_shared_through_parameters_match_pytorch_module_used_twice() -> None:
    """The supported way to share: two layers, one Parameter. Compared with PyTorch running
    one Linear twice (autograd adds the two uses' gradients)."""
    lin = _lin()
    twin = copy.deepcopy(lin)
    twin.weight, twin.bias = lin.weight, lin.bias
    ours = nn.Sequential(lin, nn.ReLU(), twin)
    t = _torch_lin(lin)
    x, dy = _data()
    y = ours.forward(x)
    dx = ours.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = t(torch.relu(t(xt)))
    yt.backward(torch.from_numpy(dy))
    assert np.abs(y - yt.detach().numpy()).max() <= TOL
    assert np.abs(dx - xt.grad.numpy()).max() <= TOL
    assert np.abs(lin.weight.grad - t.weight.grad.numpy()).max() <= TOL
    assert np.abs(lin.bias.grad - t.bias.grad.numpy()).max() <= TOL
    # one parameter, listed once (as PyTorch's parameters()): an optimizer takes it and
    # updates it once; state_dict still names it at both places, as PyTorch's does
    assert [n for n, _ in ours.named_parameters()] == ["0.weight", "0.bias"]
    before = lin.weight.data.copy()
    optim.SGD(ours.parameters(), lr=0.5).step()
    np.testing.assert_allclose(lin.weight.data, before - 0.5 * t.weight.grad.numpy(), atol=TOL)
    assert list(ours.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_identity_caches_nothing_and_may_appear_twice() -> None:
    same = nn.Identity()
    model = nn.Sequential(same, _lin(), same)
    x, dy = _data()
    model.forward(x)
    np.testing.assert_array_equal(model.backward(dy), model[1].weight.data.T.dot(dy.T).T)


def test_super_forward_of_a_subclass_is_one_use() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: np.ndarray) -> np.ndarray:
            return 2 * super().forward(x)

        def backward(self, dy: np.ndarray) -> np.ndarray:
            return super().backward(2 * dy)

    layer = Scaled(4, 4, dtype=np.float64, rng=0)
    t = _torch_lin(layer)
    x, dy = _data()
    layer.forward(x)
    layer.backward(dy)
    (2 * t(torch.from_numpy(x))).backward(torch.from_numpy(dy))
    assert np.abs(layer.weight.grad - t.weight.grad.numpy()).max() <= TOL


def test_passes_of_two_threads_do_not_mix() -> None:
    """Each thread has its own pass: one model per thread, run at the same time."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(seed: int) -> None:
        model = nn.Sequential(_lin(seed), nn.ReLU(), _lin(seed + 1))
        x, dy = _data(seed)
        try:
            start.wait()
            for _ in range(200):
                model.forward(x)
                model.backward(dy)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in (0, 10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_a_residual_sharing_weights_between_its_paths_passes_gradcheck() -> None:
    """Block and shortcut share one Linear's parameters (two layers, one Parameter): the
    finite differences of rot180.gradcheck perturb the shared weight in both paths at once."""
    lin = _lin()
    twin = copy.deepcopy(lin)
    twin.weight, twin.bias = lin.weight, lin.bias
    res = nn.Residual(nn.Sequential(lin, nn.Tanh()), shortcut=twin)
    check = gradcheck(res, _data()[0])
    assert check.ok, str(check)
    assert [n for n, _ in res.named_parameters()] == ["block.0.weight", "block.0.bias"]


class _Guarded(nn.Linear):
    """A user layer whose forward refuses large activations (raises after the layers before it
    have cached the new input)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        if np.abs(x).max() > 100:
            raise ValueError("activation too large")
        return super().forward(x)


def test_a_backward_after_a_forward_that_raised_is_refused() -> None:
    """A forward that raised leaves the caches half old, half new: the backward that follows is
    refused (it silently gave l0's weight gradient off by about 1,000 before)."""
    rng = np.random.default_rng(0)
    m = nn.Sequential(nn.Linear(4, 4, rng=rng), nn.ReLU(), _Guarded(4, 3, rng=rng))
    x = rng.standard_normal((2, 4))
    m.astype(np.float64)
    m.forward(x)
    with pytest.raises(ValueError, match="activation too large"):
        m.forward(1000 * x)
    with pytest.raises(ValueError, match="the last forward raised an error before it finished"):
        m.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="raised an error before it finished"):
        m.backward_params(np.ones((2, 3)))
    m.forward(x)                        # a forward to the end makes the backward right again
    assert m.backward(np.ones((2, 3))).shape == x.shape


def test_a_backward_after_a_refused_double_use_is_refused() -> None:
    lin = nn.Linear(4, 4)
    bad = nn.Sequential(lin, nn.ReLU(), lin)
    with pytest.raises(ValueError, match="used twice"):
        bad.forward(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="raised an error before it finished"):
        bad.backward(np.ones((3, 4), np.float32))
