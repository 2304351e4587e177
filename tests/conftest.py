import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests must not depend on the thread count; keep it small on the 2-core CI machine."""
    torch.set_num_threads(2)
    yield
