"""One fixture for test folders of tiny tensors: a conftest imports it to run its tests on one torch thread."""

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Extra OpenMP threads only add overhead to tiny tensors on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
