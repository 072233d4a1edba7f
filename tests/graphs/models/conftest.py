import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # These tests use tiny tensors: extra OpenMP threads only add overhead on a shared CPU.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
