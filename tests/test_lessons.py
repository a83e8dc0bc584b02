"""The lessons: each runs top to bottom from a clean kernel within its time budget, converts to
slides, is stored without outputs, and follows the lesson arc."""

import time
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.ipynb"))
BUDGET_SECONDS = 90  # per lesson on 2 cores, JIT warm-up included


def _read(path):
    return nbformat.read(path, as_version=4)


def test_six_lessons_exist():
    assert [path.name[:2] for path in LESSONS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda path: path.stem)
def test_lesson_runs_within_budget(path):
    notebook = _read(path)
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=BUDGET_SECONDS,
                                     resources={"metadata": {"path": str(LESSONS_DIR)}})
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError on any error, including a failed lesson assert
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_SECONDS, f"{path.name} took {elapsed:.0f} s, budget {BUDGET_SECONDS} s"


@pytest.mark.parametrize("path", LESSONS, ids=lambda path: path.stem)
def test_lesson_converts_to_slides(path):
    from nbconvert import SlidesExporter

    notebook = _read(path)
    slide_cells = [cell for cell in notebook.cells if cell.metadata.get("slideshow", {}).get("slide_type") == "slide"]
    body, _ = SlidesExporter().from_notebook_node(notebook)
    assert "reveal" in body
    assert body.count("<section") >= len(slide_cells) > 3


@pytest.mark.parametrize("path", LESSONS, ids=lambda path: path.stem)
def test_lesson_stored_without_outputs(path):
    for index, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has stored outputs; clear them"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"


@pytest.mark.parametrize("path", LESSONS, ids=lambda path: path.stem)
def test_lesson_follows_the_arc(path):
    cells = _read(path).cells
    markdown = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    code = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
    for heading in ("## Idea", "## Equation", "## Summary", "## Exercises"):
        assert heading in markdown, f"{path.name} has no {heading!r} section"
    first_code = next(cell for cell in cells if cell.cell_type == "code")
    assert "warm-up took" in first_code.source, "the first code cell warms up Numba and reports the time"
    assert "assert " in code, "a lesson checks itself with asserts"
    assert "plot_" in code or "save_rope_animation" in code, "a lesson draws a figure from minitx.plotting"
    assert "import minitx" in code
    assert "@numba" not in code, "lessons import the compiled kernels, never redefine them"
    assert "class TransformerLM" not in code, "lessons import the model, never redefine it"
