"""The notebooks run from top to bottom on the synthetic world, as CI executes them.

Each runs in its own temporary working directory with the kernel of the interpreter running
the tests (ipykernel's built-in `python3` spec points at `sys.executable`, so nothing is
registered globally), and fails on the first cell that raises. The notebooks create their own
temporary MLflow store and export, so they never touch the repository.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_SECONDS = 900  # one cell trains a model with its backtest: minutes, not hours


@pytest.mark.parametrize(
    "name", ["01-quarterly-retrain.ipynb", "02-model-vs-baselines.ipynb"], ids=lambda n: n[:2]
)
def test_notebook_runs_without_errors(name: str, tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{name} is saved with outputs; clear them so the repository stays small"
    )
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
