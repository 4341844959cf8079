"""Nothing a user saved is ever executed: no pickle anywhere in the package, and the public
error types for bad files are ValueErrors that name the file."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import rot180

SRC = Path(rot180.__file__).parent
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal",
                     "joblib", "torch"}


def package_files() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 40
    return files


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_pickle_no_eval_no_torch(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]} if node.level == 0 else set()
        else:
            names = set()
        assert not names & FORBIDDEN_MODULES, f"{path}:{node.lineno} imports {names}"
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(
                fn, ast.Attribute) else ""
            if isinstance(fn, ast.Name):   # the builtins (model.eval() is a method)
                assert name not in {"eval", "exec", "__import__"}, f"{path}:{node.lineno} {name}"
            if name == "load" and isinstance(fn, ast.Attribute) and getattr(
                    fn.value, "id", "") == "np":
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("allow_pickle"), ast.Constant) and \
                    kw["allow_pickle"].value is False, f"{path}:{node.lineno} np.load needs " \
                    "allow_pickle=False"
            for k in node.keywords:
                if k.arg == "allow_pickle":
                    assert isinstance(k.value, ast.Constant) and k.value.value is False


def test_error_types_are_value_errors_and_exported() -> None:
    assert issubclass(rot180.CheckpointError, ValueError)
    assert issubclass(rot180.DataError, ValueError)
    from rot180.data import DataError
    from rot180.train import CheckpointError

    assert rot180.CheckpointError is CheckpointError and rot180.DataError is DataError
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rot180.nope  # noqa: B018


def test_a_pickle_renamed_as_checkpoint_is_refused_not_run(tmp_path) -> None:
    # The classic exploit: a pickle whose REDUCE calls os.system. Written by hand (no pickler).
    evil = tmp_path / "model.safetensors"
    marker = tmp_path / "pwned"
    evil.write_bytes(b"\x80\x02cos\nsystem\nq\x00X" + len(f"touch {marker}").to_bytes(4, "little")
                     + f"touch {marker}".encode() + b"\x85R.")
    with pytest.raises(rot180.CheckpointError, match=r"model\.safetensors: not a valid"):
        rot180.load_checkpoint(evil)
    assert not marker.exists()


def test_a_numpy_object_array_file_is_never_unpickled(tmp_path) -> None:
    from rot180.data import DataError, read_idx

    p = tmp_path / "train-images-idx3-ubyte"
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    p.write_bytes((tmp_path / "obj.npy").read_bytes())
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        read_idx(p)
