import pytest

from tests.bruteforce import single_thread


@pytest.fixture(autouse=True)
def _single_thread():
    yield from single_thread()
