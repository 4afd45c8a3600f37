"""neural_ingest.model_info: what a loaded model is, importable on its own."""
from __future__ import annotations


def test_model_info_imports_without_beam():
    """What the mapping and query time need of a model is importable without Beam (or torch)."""
    import subprocess
    import sys

    code = "import sys, neural_ingest.model_info; print('apache_beam' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
