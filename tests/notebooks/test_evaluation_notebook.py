"""The evaluation notebook is executed end to end so it never rots."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "evaluation.ipynb"


def test_evaluation_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SHELFGUARD_NB_STORES", "4")
    monkeypatch.delenv("SHELFGUARD_MODEL_URI", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # PR curves, calibration, importance
    text = "".join(o.get("text", "") for o in outputs)
    assert "false alarms" in text and "misses" in text
    nbformat.write(nb, tmp_path / "executed.ipynb")
