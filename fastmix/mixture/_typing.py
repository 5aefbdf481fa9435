"""Type aliases of the estimators' signatures (documentation for readers and mypy)."""
from typing import Any, Union

import numpy as np
from numpy.typing import ArrayLike

#: What the estimators accept as data: an array-like, or out-of-core data -- a path, an
#: ``np.memmap``, a ``fastmix.io.Source``, a list of chunks or a callable returning an iterator
#: of chunks (``fastmix.io.as_source``), a Dask or a GPU array.  Checked at run time.
DataLike = Any

#: A seed, a NumPy generator, a legacy RandomState, or None (fresh entropy).
RandomStateLike = Union[int, np.random.Generator, np.random.RandomState, None]

__all__ = ["ArrayLike", "DataLike", "RandomStateLike"]
