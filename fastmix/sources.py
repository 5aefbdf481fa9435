"""Deprecated alias of ``fastmix.io`` (kept for one release): ``fastmix.sources.X`` is
``fastmix.io.X``.  Import from ``fastmix.io`` instead; setting attributes on this module changes
nothing in the readers (``fastmix.io.base.BLOCK_BYTES`` is the block size they read)."""
import warnings

from .io import *  # noqa: F401,F403  (the public names of fastmix.io)
from .io import __all__  # noqa: F401
from .io.base import BLOCK_BYTES  # noqa: F401
from .io.columnar import TXT_DELIMITERS  # noqa: F401
from .io.record import FINGERPRINT_ROWS  # noqa: F401

warnings.warn("fastmix.sources is deprecated and will be removed in the next release; "
              "import from fastmix.io", DeprecationWarning, stacklevel=2)
