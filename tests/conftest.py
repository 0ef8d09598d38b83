"""Shared test settings: one torch thread (on a busy 2-core machine, two threads per
process oversubscribe the cores and slow small forward passes by an order of magnitude)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
