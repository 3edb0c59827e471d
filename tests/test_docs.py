"""Every Python block of docs/*.md runs as written (issue #22; the README's own blocks: tests/test_readme.py).

Each ```python block is one test (``docs/api.md:18`` is the block whose fence opens on line 18). It runs in a
fresh namespace, in a temporary working directory and cache, with JAX's x64 flag restored afterwards. HTML
comments on the lines just above a block (blank lines allowed), ``<!-- docs-test: DIRECTIVE; DIRECTIVE -->``,
say how:

- ``name=NAME``: names the block, for ``after=``.
- ``after=NAME`` or ``after=page.md#NAME`` (several: ``after=A, B``): the named blocks run first, in the same
  namespace (the names a block uses that an earlier block on the page, or on another page, defines).
- ``setup=NAME``: a setup of this file runs first (``SETUPS``: files the block reads, not worth showing).
- ``slow=REASON``: the block is too heavy for ``make test`` (minutes, or an external simulator that another
  test already drives); it runs under ``pytest -m slow`` only. The reason is required.
- ``run-by=tests/test_x.py``: another test of ``make test`` runs this block (it extracts it from the page); here
  it runs under ``pytest -m slow`` only, and ``make test`` checks that the test file still reads the page.
- ``fails``: the block must raise, and the message it shows (its last comment lines, from ``# SomeError: ...``
  to the end, whitespace ignored; ``...`` or ``…`` at the end: the message starts so) must be the one raised.
- ``warns``: the same for a warning (the deprecation warnings, shown once per process, are reset first).

A block without directives must run to the end. ``test_every_directive_is_known`` keeps the comments honest.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```$", re.S | re.M)
DIRECTIVE_COMMENT = re.compile(r"<!--\s*docs-test:(.*?)-->", re.S)
FLAGS = {"fails", "warns"}
VALUED = {"name", "after", "setup", "run-by", "slow"}


@dataclass
class Block:
    page: str
    line: int
    code: str
    name: str | None = None
    after: list[str] = field(default_factory=list)
    setup: str | None = None
    run_by: str | None = None
    slow_reason: str | None = None
    flags: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _directives(text: str, start: int) -> list[str]:
    """The docs-test directives of the comment lines just above offset ``start`` (blank lines skipped)."""
    lines = text[:start].rstrip("\n").split("\n")
    found = []
    while lines and (not lines[-1].strip() or lines[-1].strip().startswith("<!--")):
        line = lines.pop().strip()
        for match in DIRECTIVE_COMMENT.finditer(line):
            found += [part.strip() for part in match.group(1).split(";") if part.strip()]
    return found


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        indent = len(match.group(1))
        code = "\n".join(line[indent:] for line in match.group(2).split("\n"))
        block = Block(path.name, text.count("\n", 0, match.start()) + 1, code)
        for directive in _directives(text, match.start()):
            key, sep, value = directive.partition("=")
            key = key.strip()
            if sep and key == "name":
                block.name = value.strip()
            elif sep and key == "after":
                block.after = [v.strip() for v in value.split(",") if v.strip()]
            elif sep and key == "setup":
                block.setup = value.strip()
            elif sep and key == "run-by":
                block.run_by = value.strip()
            elif sep and key == "slow" and value.strip():
                block.slow_reason = value.strip()
                block.flags.add("slow")
            elif not sep and key in FLAGS:
                block.flags.add(key)
            else:
                raise ValueError(f"{block.id}: unknown docs-test directive {directive!r}; known: "
                                 f"{', '.join(sorted(FLAGS))}, {', '.join(f'{k}=' for k in sorted(VALUED))}")
        blocks.append(block)
    return blocks


PAGES = sorted(DOCS.glob("*.md"))
BLOCKS = [block for page in PAGES for block in page_blocks(page)]
NAMED = {f"{b.page}#{b.name}": b for b in BLOCKS if b.name}


def _named(block: Block, ref: str) -> Block:
    return NAMED[ref if "#" in ref else f"{block.page}#{ref}"]


# --- setups: what a block needs that the page need not show -----------------------------------------------

def _files_setup(namespace: dict) -> None:
    """The files of docs/data.md's "From a file" block, in the working directory."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["series,time,acc_x,acc_y,label"]
    for series in range(40):
        label = ("walk", "run")[series % 2]
        rows += [f"s{series},{t},{rng.normal():.3f},{rng.normal() + series % 2:.3f},{label}" for t in range(12)]
    Path("my.csv").write_text("\n".join(rows) + "\n")
    Path("train.csv").write_text("\n".join(rows[: 1 + 30 * 12]) + "\n")
    Path("test.csv").write_text("\n".join(rows[:1] + rows[1 + 30 * 12:]) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = {"series": [], "time": [], "x": [], "activity": []}
    for series in range(40):
        for t in range(12):
            table["series"].append(series)
            table["time"].append(t)
            table["x"].append(float(rng.normal() + series % 3))
            table["activity"].append(("sit", "stand", "walk")[series % 3])
    pq.write_table(pa.table(table), "runs.parquet")


SETUPS = {"files": _files_setup}


# --- running a block ------------------------------------------------------------------------------------

def _shown_message(code: str) -> tuple[str, str, bool]:
    """(type name, message, prefix only) of the message a failing block shows in its last comment lines."""
    lines = code.rstrip().split("\n")
    for start in range(len(lines) - 1, -1, -1):
        match = re.match(r"\s*#\s*(\w+(?:Error|Warning|Exception)):\s*(.*)", lines[start])
        if match:
            rest = [re.sub(r"^\s*#\s?", "", line) for line in lines[start + 1:]]
            assert all(line.lstrip().startswith("#") for line in lines[start:]), \
                "the shown message must be the block's last lines, all comments"
            message = " ".join([match.group(2), *rest])
            message = " ".join(message.split())
            prefix = message.endswith(("...", "…"))
            return match.group(1), message.rstrip(".…").rstrip() if prefix else message, prefix
    raise AssertionError("a block marked fails/warns must end with the message it shows: # SomeError: ...")


def _same_message(shown: str, actual: str, prefix: bool) -> bool:
    actual = " ".join(actual.split())
    return actual.startswith(shown) if prefix else actual == shown


def _execute(block: Block, namespace: dict) -> None:
    exec(compile(block.code, block.id, "exec"), namespace)


def _prepare(block: Block, namespace: dict, done: set[str]) -> None:
    """Run what ``block`` needs first: its setup and the blocks named in ``after`` (theirs before them)."""
    if block.setup is not None and block.setup not in done:
        SETUPS[block.setup](namespace)
        done.add(block.setup)
    for ref in block.after:
        needed = _named(block, ref)
        if needed.id not in done:
            _prepare(needed, namespace, done)
            _execute(needed, namespace)
            done.add(needed.id)


def _params():
    return [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if "slow" in b.flags or b.run_by else [])
            for b in BLOCKS]


@pytest.fixture
def sandbox(monkeypatch, tmp_path):
    """A temporary working directory and cache; JAX's x64 flag restored; deprecations shown afresh."""
    from hamecho.nn import keywords

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAMECHO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(keywords, "WARNED", set())
    old = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", old)


@pytest.mark.parametrize("block", _params())
def test_docs_block_runs(block, sandbox):
    namespace = {"__name__": f"docs_{block.page[:-3]}"}
    _prepare(block, namespace, set())
    if "fails" in block.flags:
        kind, shown, prefix = _shown_message(block.code)
        with pytest.raises(Exception) as caught:
            _execute(block, namespace)
        assert type(caught.value).__name__ == kind, f"{block.id} raised {caught.value!r}, the page shows {kind}"
        assert _same_message(shown, str(caught.value), prefix), \
            f"{block.id}: the page shows\n  {shown}\nbut the message is\n  {caught.value}"
    elif "warns" in block.flags:
        kind, shown, prefix = _shown_message(block.code)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _execute(block, namespace)
        messages = [str(w.message) for w in caught if w.category.__name__ == kind]
        assert any(_same_message(shown, m, prefix) for m in messages), \
            f"{block.id}: the page shows the {kind}\n  {shown}\nbut the warnings were\n  {messages}"
    else:
        _execute(block, namespace)


def test_every_page_has_its_blocks_found_and_every_reference_resolves():
    """Every ```python fence is found (none hidden by an odd indentation) and every ``after=`` names a block."""
    for page in PAGES:
        text = page.read_text()
        opened = len(re.findall(r"^ *```python$", text, re.M))
        assert opened == sum(1 for b in BLOCKS if b.page == page.name), f"{page.name}: a python block was missed"
    for block in BLOCKS:
        for ref in block.after:
            assert (ref if "#" in ref else f"{block.page}#{ref}") in NAMED, f"{block.id}: after={ref} names no block"
        assert block.setup is None or block.setup in SETUPS, f"{block.id}: setup={block.setup} is not in SETUPS"
        if block.run_by is not None:
            runner = ROOT / block.run_by
            assert runner.is_file() and f'"{block.page}"' in runner.read_text(), \
                f"{block.id}: run-by={block.run_by}, but that test does not read {block.page}"


def test_every_directive_is_known(tmp_path):
    """A misspelled directive (``<!-- docs-test: slwo -->``) is an error, not a block run without it."""
    path = tmp_path / "page.md"
    path.write_text("<!-- docs-test: slwo -->\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="unknown docs-test directive 'slwo'"):
        page_blocks(path)
    path.write_text("<!-- docs-test: slow -->\n```python\npass\n```\n")           # a slow block says why
    with pytest.raises(ValueError, match="unknown docs-test directive 'slow'"):
        page_blocks(path)
    path.write_text("<!-- docs-test: name=a; slow=needs ngspice -->\n```python\npass\n```\n")
    (block,) = page_blocks(path)
    assert block.name == "a" and "slow" in block.flags and block.slow_reason == "needs ngspice"


# --- statements of the docs that a cheap computation checks (issue #22) ------------------------------------

def test_gradcheck_sample_counts_the_arrays_it_reports():
    """precision.md's sample of `hamecho gradcheck --length 1000 --blocks 3` says how many arrays it has."""
    import hamecho as he
    from hamecho.tools.gradcheck import named_arrays

    text = (DOCS / "precision.md").read_text()
    assert "hamecho gradcheck --length 1000 --blocks 3 --dtype float32" in text
    stated = int(re.search(r"\((\d+) arrays in all\)", text).group(1))
    model = he.HSSM(in_dim=3, out_dim=4, hidden=16, state=8, blocks=3, key=jax.random.PRNGKey(0))
    assert stated == len(named_arrays(model))


def test_bench_quick_help_names_what_it_runs():
    """`hamecho bench --help` describes --quick from the grid it runs (not "all algorithms")."""
    from hamecho.cli import build_parser
    from hamecho.tools.bench import QUICK

    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    help_text = " ".join(bench.format_help().split())
    assert "all algorithms" not in help_text
    assert all(name in help_text for name in (*QUICK["algos"], *QUICK["models"]))


def test_make_run_duration_is_stated_in_one_place():
    """training.md's "How long it takes" states `make run`'s duration; the README and the Makefile point to it."""
    readme, makefile = (ROOT / "README.md").read_text(), (ROOT / "Makefile").read_text()
    training = (DOCS / "training.md").read_text()
    assert "### How long it takes" in training and "docs/training.md#how-long-it-takes" in readme
    assert 'docs/training.md, "How long it takes"' in makefile
    minutes = re.compile(r"\d+\s*(?:-|–|to)\s*\d+ min")
    assert not minutes.search(readme) and not minutes.search(makefile)
    assert "## `make run`: RHEL vs BPTT on a real dataset, offline\n" in training
    assert "docs/training.md#make-run-rhel-vs-bptt-on-a-real-dataset-offline)" in readme


def test_streaming_memory_at_a_million_steps_quotes_the_table():
    """memory.md's prose quotes the L = 10⁶ figures of its own target table."""
    text = (DOCS / "memory.md").read_text()
    row = next(line for line in text.split("\n") if line.startswith("| peak at L = 10⁶"))
    step = re.search(r"the step alone (\d\.\d+) GiB", row).group(1)
    process = re.search(r"\*\*(\d\.\d+) GiB", row).group(1)
    assert f"at L = 10⁶ the step alone peaks at {step} GiB, the whole\n  process at {process} GiB" in text


def test_api_page_gives_the_whole_hssm_signature():
    """api.md's `he.HSSM(...)` line names every keyword of the constructor, with its default."""
    import inspect

    import hamecho as he

    text = " ".join((DOCS / "api.md").read_text().split())
    shown = re.search(r"The model: `he\.HSSM\((.*?)\)`", text).group(1)
    for name, parameter in inspect.signature(he.HSSM.__init__).parameters.items():
        if name == "self":
            continue
        assert re.search(rf"\b{name}\b", shown), f"api.md's HSSM signature leaves out {name}="
        default = parameter.default
        if default is not inspect.Parameter.empty and not isinstance(default, str):
            given = re.search(rf"\b{name}=([^,]+)", shown).group(1)
            same = given == str(default) if default is None or isinstance(default, bool) else float(given) == default
            assert same, \
                f"api.md gives {name} the default {given}, the code {default}"
        elif isinstance(default, str):
            assert f'{name}="{default}"' in shown, f"api.md's {name}= does not show its default {default!r} first"
