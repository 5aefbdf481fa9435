"""kernels.cpu._threads.run_ranges: every item exactly once, errors re-raised, nesting runs inline."""
import threading

import numpy as np
import pytest

from fastmix.kernels import _threads, thread_limit


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_item_once(n, threads):
    seen = np.zeros(n, int)
    lock = threading.Lock()

    def fn(a, b):
        assert 0 <= a < b <= n
        with lock:
            seen[a:b] += 1
    _threads.run_ranges(fn, n, threads)
    np.testing.assert_array_equal(seen, 1)


def test_error_is_reraised():
    def fn(a, b):
        if a <= 3 < b:
            raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        _threads.run_ranges(fn, 10, 2)


def test_nested_call_runs_inline_without_deadlock():
    """A range that starts its own run_ranges (k-means seedings, each with its own passes) must
    neither wait on the pool from a pool thread nor lose items."""
    inner_threads = []
    out = np.zeros((4, 5), int)

    def inner(i):
        def fn(a, b):
            inner_threads.append(threading.get_ident())
            out[i, a:b] += 1
        return fn

    def outer(a, b):
        for i in range(a, b):
            me = threading.get_ident()
            _threads.run_ranges(inner(i), 5, 2)
            assert inner_threads[-1] == me  # ran in the outer range's own thread
    t = threading.Thread(target=_threads.run_ranges, args=(outer, 4, 2))
    t.start()
    t.join(60)
    assert not t.is_alive(), "nested run_ranges deadlocked"
    np.testing.assert_array_equal(out, 1)


def test_thread_limit_is_respected():
    idents = set()

    def fn(a, b):
        idents.add(threading.get_ident())
    with thread_limit(1):
        _threads.run_ranges(fn, 50)
    assert idents == {threading.get_ident()}
