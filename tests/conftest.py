import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    # Two cores on CI: more threads only add contention; fp32 everywhere for exact parity tests.
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
