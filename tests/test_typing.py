"""Types a user's tools can read (issue #21 item 9): the package ships ``py.typed``, the public API's arrays
carry jaxtyping annotations that resolve, and there is one ``PyTree`` alias (jaxtyping's).

Annotations only: nothing checks shapes at run time, so these tests read the annotations themselves.
"""
import re
import tomllib
import typing
from pathlib import Path

import jaxtyping

import hamecho as he

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_ships_with_the_package():
    assert (Path(he.__file__).parent / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["hamecho"]
    assert any(dep.startswith("jaxtyping") for dep in pyproject["project"]["dependencies"])


def _mentions_jaxtyping(hint) -> bool:
    """Whether a resolved annotation is, or unions over, a jaxtyping array type."""
    args = typing.get_args(hint)
    if args:
        return any(_mentions_jaxtyping(arg) for arg in args)
    return isinstance(hint, type) and issubclass(hint, jaxtyping.AbstractArray)


def test_the_public_functions_annotate_their_arrays_with_jaxtyping():
    """The annotations resolve (no stale name) and the arrays in and out are jaxtyping types with shapes."""
    expected = {he.value_and_grad: ("x", "y", "return"), he.train_step: ("x", "y", "return"),
                he.predict: ("x", "return"), he.HSSM.__call__: ("x", "return"), he.HRU.__call__: ("u", "return")}
    for function, names in expected.items():
        hints = typing.get_type_hints(function)
        for name in names:
            assert _mentions_jaxtyping(hints[name]), (function.__qualname__, name, hints.get(name))
    x = typing.get_type_hints(he.value_and_grad)["x"]
    assert {arg.dim_str for arg in typing.get_args(x)} == {"batch length in_dim"}


def test_one_pytree_alias():
    """No module defines its own ``PyTree`` (it was ``Any``, in three files); those that name it import
    jaxtyping's."""
    sources = {path: path.read_text() for path in (ROOT / "src" / "hamecho").rglob("*.py")}
    assert not [path for path, text in sources.items() if re.search(r"^PyTree\s*=", text, re.M)]
    users = {path.name for path, text in sources.items() if re.search(r"\bPyTree\b", text)}
    assert {"hamiltonians.py", "layers.py", "api.py"} <= users
    for path, text in sources.items():
        if path.name in users:
            assert re.search(r"^from jaxtyping import .*\bPyTree\b", text, re.M), path
    assert he.nn.layers.PyTree is jaxtyping.PyTree
