"""Shared fixtures: the offline data directory and a tiny random Llama with the SmolLM2 tokenizer."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests run in parallel (pytest -n 2): one torch thread per worker, or the two workers oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch
    torch.set_num_threads(1)
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SOT_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.exists():
        pytest.skip(f"offline data not found at {DATA_DIR} (set SOT_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path to a tiny randomly initialised Llama (2 layers, hidden 64) with the SmolLM2 tokenizer."""
    from sot.models import tiny_random

    return str(tiny_random(tmp_path_factory.mktemp("tiny-llama")))


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
