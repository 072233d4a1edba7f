import pytest


@pytest.fixture(autouse=True)
def one_thread():
    """Run BLAS/OpenMP single-threaded: on a shared, loaded machine OpenMP spin-waits make t-SNE 10x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
