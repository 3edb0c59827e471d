"""The README's code runs: its training example trains a model whose test accuracy beats chance, and every
``he.<name>`` its API block mentions exists (issue #13: "a test trains a small model through exactly that loop").

The training example is the first ```python block after the ``<!-- readme-example`` marker; it is executed as
written, in a fresh namespace, and must leave its test accuracy in ``accuracy``.
"""
import ast
import re
import warnings
from pathlib import Path

import jax

import hamecho

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-example"
CHANCE = 0.25  # synthetic/first5 has 4 balanced classes


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(offset, code) of every ```python block of ``text``."""
    return [(m.start(), m.group(1)) for m in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M)]


def readme_example(text: str) -> str:
    start = text.index(MARKER)
    return next(code for offset, code in python_blocks(text) if offset > start)


def api_block(text: str) -> str:
    return next(code for _, code in python_blocks(text) if "import hamecho as he" in code)


def test_readme_opens_with_the_two_commands_and_stays_short():
    text = README.read_text()
    first_block = re.search(r"^```bash\n(.*?)^```$", text, re.S | re.M).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert text.index("```bash") < text.index("##"), "the two commands come before any section"
    assert len(text.encode()) <= 8 * 1024, "the README must stay at most 8 KB (issue #13)"


def test_api_block_parses_and_names_only_existing_attributes():
    code = api_block(README.read_text())
    ast.parse(code)
    names = set(re.findall(r"\bhe\.(\w+)", code))  # comments included: "# or he.RecomputeBlocks()"
    assert {"HSSM", "value_and_grad", "RHEL", "BPTT", "FixedPointLeapfrog", "TimeChunks", "RecomputeBlocks",
            "Leapfrog", "retrace_error", "train_step", "init_optimizer", "predict"} <= names
    missing = sorted(name for name in names if not hasattr(hamecho, name))
    assert not missing, f"the README's API block names attributes hamecho lacks: {missing}"
    assert set(names) <= set(hamecho.__all__), "the README shows only public names"


def test_readme_training_example_beats_chance():
    code = readme_example(README.read_text())
    assert "he.train_step" in code and "he.predict" in code
    old_x64 = jax.config.jax_enable_x64
    namespace = {"__name__": "readme_example"}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code, str(README), "exec"), namespace)
    finally:
        jax.config.update("jax_enable_x64", old_x64)
    untouched = [w for w in caught if "running statistics were never updated" in str(w.message)]
    assert not untouched, "predict warned: the example's loop dropped the norm statistics"
    accuracy = namespace["accuracy"]
    assert accuracy >= 2 * CHANCE, f"README example: test accuracy {accuracy:.1%}, chance {CHANCE:.0%}"

