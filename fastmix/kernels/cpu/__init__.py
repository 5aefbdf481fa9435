"""Compiled CPU kernels (numba ``njit``), one module per kernel family: ``estep`` (fused E-step
and scoring), ``lowrank``, ``sgd``, ``expansion``; ``_jit`` holds the ``kernel()`` decorator,
``_math`` the exp helpers, ``_threads`` the pool running serial kernels over chunk slots.
Drivers call them through the wrappers in ``fastmix.kernels``."""
