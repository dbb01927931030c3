"""The examples in the documentation are tests (docs/*.md and README.md).

Conventions, per fenced block of a Markdown file:

* a ``python`` block with ``>>>`` lines is a doctest: every output shown must match;
* any other ``python`` block is executed; its ``assert`` statements are the checks;
* a ``yaml`` or ``toml`` block is a complete config and must load with ``load_scenario``
  (write ``yaml fragment`` / ``toml fragment`` for a snippet that is not);
* other blocks (``csv``, ``text``, ...) are not run.

The blocks of one file run in order in one namespace, in a fresh temporary directory (so an
example may write a file and a later one read it). Each block must run in a few seconds.
"""

from __future__ import annotations

import doctest
import io
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from policyopt.model import load_scenario

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
README = ROOT / "README.md"
MAX_SECONDS_PER_BLOCK = 10.0  # the docs promise < 2 s; this is the hard stop
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass
class Block:
    """One fenced block: its info string (``python``, ``yaml fragment``...) and text."""

    path: Path
    line: int  # line of the first line of the block's text (1-based)
    info: str
    text: str

    @property
    def lang(self) -> str:
        return self.info.split()[0].lower() if self.info else ""

    @property
    def where(self) -> str:
        try:
            name = self.path.relative_to(ROOT)
        except ValueError:  # a file outside the repository (the parser's own tests)
            name = self.path
        return f"{name}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            info = stripped[len(fence) :].strip()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(fence):
                body.append(lines[j])
                j += 1
            if j == len(lines):
                raise AssertionError(f"{path.name}:{i + 1}: unclosed code fence")
            blocks.append(Block(path, i + 2, info, "\n".join(body) + "\n"))
            i = j + 1
        else:
            i += 1
    return blocks


def runnable(block: Block) -> bool:
    return block.lang == "python" or (
        block.lang in ("yaml", "toml") and "fragment" not in block.info.split()[1:]
    )


def doc_files() -> list[Path]:
    files = list(DOCS)
    if README.is_file() and any(b.lang == "python" for b in fenced_blocks(README)):
        files.append(README)
    return files


def run_doctest(block: Block, namespace: dict) -> int:
    """Run a ``>>>`` block; returns the number of examples; fails with the diff."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.text, namespace, block.where, str(block.path), block.line - 1)
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    report = io.StringIO()
    runner.run(test, out=report.write, clear_globs=False)
    namespace.update(test.globs)
    if runner.failures:
        pytest.fail(f"doctest failed at {block.where}\n{report.getvalue()}", pytrace=False)
    return len(test.examples)


def run_script(block: Block, namespace: dict) -> None:
    # pad with blank lines so that tracebacks show the line numbers of the Markdown file
    code = compile("\n" * (block.line - 1) + block.text, str(block.path), "exec", dont_inherit=True)
    exec(code, namespace)


def run_config(block: Block, tmp: Path) -> None:
    cfg = tmp / f"doc_example_{block.line}.{block.lang}"
    cfg.write_text(block.text)
    load_scenario(cfg)  # raises SpecError with the field if the example is wrong


def test_docs_exist() -> None:
    names = {p.name for p in DOCS}
    assert {"model.md", "schedulers.md", "metrics.md", "capacity.md"} <= names


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in fenced_blocks(path) if runnable(b)]
    assert blocks, f"{path.name} has no runnable example"
    namespace: dict = {"__name__": f"doc_{path.stem}"}
    for block in blocks:
        start = time.perf_counter()
        if block.lang == "python" and any(
            line.lstrip().startswith(">>>") for line in block.text.splitlines()
        ):
            assert run_doctest(block, namespace) > 0
        elif block.lang == "python":
            run_script(block, namespace)
        else:
            run_config(block, tmp_path)
        took = time.perf_counter() - start
        assert took < MAX_SECONDS_PER_BLOCK, f"{block.where} took {took:.1f} s"


def test_yaml_and_toml_examples_agree(tmp_path: Path) -> None:
    """docs/model.md shows one scenario in YAML and in TOML (its first config blocks of each
    language; later ones illustrate other keys): they must be the same."""
    blocks = [b for b in fenced_blocks(ROOT / "docs" / "model.md") if runnable(b)]
    configs = [
        next(b for b in blocks if b.lang == "yaml"),
        next(b for b in blocks if b.lang == "toml"),
    ]
    loaded = []
    for b in configs:
        f = tmp_path / f"scenario.{b.lang}"
        f.write_text(b.text)
        loaded.append(load_scenario(f))
    assert loaded[0] == loaded[1]


def test_block_parser(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("text\n```python\n>>> 1 + 1\n2\n```\n\n````yaml fragment\na: 1\n````\n")
    blocks = fenced_blocks(md)
    assert [(b.line, b.lang, b.info) for b in blocks] == [
        (3, "python", "python"),
        (8, "yaml", "yaml fragment"),
    ]
    assert runnable(blocks[0]) and not runnable(blocks[1])


def test_a_wrong_example_fails(tmp_path: Path) -> None:
    md = tmp_path / "wrong.md"
    md.write_text("```python\n>>> 1 + 1\n3\n```\n\n```python\nassert 1 + 1 == 3\n```\n")
    doctest_block, script_block = fenced_blocks(md)
    with pytest.raises(pytest.fail.Exception, match="doctest failed"):
        run_doctest(doctest_block, {})
    with pytest.raises(AssertionError):
        run_script(script_block, {})
