"""fastmix's CUDA kernels and their launchers (numba-cuda).

The drivers (``fastmix.gpu``, ``fastmix.sgd``, ``fastmix.expansion``) use this package through
the names below; each lives in the module of its family, with its kernels beside it:

=================  ================================================================================
``device``         probe (``gpu_available``, ``require_gpu``, ``GPUUnavailableError``), launch
                   shapes and limits (``check_launch``, ``configure``), memory (``free_bytes``),
                   device arrays (``to_device``, ``to_host``, ``weights_to_device``,
                   ``rows_to_device``), ``DeviceScratch``
``estep``          the fused E-step kernels of the classic kinds, the tile steps every fused kernel
                   shares, ``EStepPlan`` (kernels, parameters and launch grouping of one E-step),
                   ``estep_stats_gpu``, ``log_prob_gpu``, ``resolve_formulation``
``lowrank``        the lowrank kind's kernels and parameter layout (launched by ``EStepPlan``)
``gemm``           the diag E-step as tiled GEMMs for many components (chosen by ``EStepPlan``)
``stream``         host -> device streaming: ``StreamedEStep``, ``stream_chunk_rows``
``sgd``            mini-batch SGD: ``SGDDeviceState``, ``sgd_minibatch_gpu``
``linalg``         BigLearn's marginal rows: ``marginal_buffer``, ``marginal_rows``
``expansion``      the GMM-expansion grid pass: ``grid_stats_gpu``, ``column_range_gpu``
``missing``        the masked diag/spherical E-step (NaN entries marginalised):
                   ``estep_stats_missing_gpu``, ``log_prob_missing_gpu``
=================  ================================================================================

Importing this package imports nothing but this file: ``device`` and ``stream`` (NumPy only) load
on first use of one of their names, and a kernel module (numba-cuda) on first use of one of its
names, after ``require_gpu()`` -- so without numba-cuda or a GPU the first such use raises
``GPUUnavailableError`` saying what is missing, and ``NUMBA_ENABLE_CUDASIM=1`` (set before
numba-cuda is first imported) still switches everything to numba's CUDA simulator, which is how
the tests run without a GPU.

Every launcher takes device arrays (``to_device``) and the same ``KernelParams`` as the CPU
kernels, and returns what the CPU wrappers in ``fastmix.kernels`` return: float64 statistics
``(nk, s1, s2, ll, ws)`` on the host.

This package holds no copies: a name is read from its module at every access.  The modules
call each other's helpers through the module (``device._alloc(...)``, ``device.configure(...)``),
so a test replaces a helper in the module that defines it (``monkeypatch.setattr(
fastmix.kernels.cuda.device, "_alloc", ...)``) and every caller sees the replacement; a name set
on this package is seen only by code that reads it through the package (the drivers).
"""
import importlib

#: module -> the public names it provides through this package
_MODULES = {
    "device": (
        "DEFAULT_BLOCK_ROWS", "DEFAULT_THREADS", "DEFAULT_GRID_BLOCK_ROWS",
        "DEFAULT_GRID_THREADS", "SGD_THREADS", "SGD_TILE_ROWS", "INSTALL_HINT", "MAX_GRID_DIMS",
        "MAX_BLOCK_DIMS", "MAX_THREADS_PER_BLOCK", "check_launch", "configure",
        "GPUUnavailableError", "gpu_available", "require_gpu", "simulated", "device_name",
        "free_bytes", "is_device_array", "to_device", "to_host", "weights_to_device",
        "rows_to_device", "DeviceScratch"),
    "stream": ("STREAM_CHUNK_BYTES", "STAGING_THREADS", "stream_chunk_rows", "StreamedEStep"),
    "estep": ("EStepPlan", "estep_stats_gpu", "log_prob_gpu", "resolve_formulation"),
    "sgd": ("SGDDeviceState", "sgd_minibatch_gpu"),
    "linalg": ("marginal_buffer", "marginal_rows"),
    "expansion": ("grid_stats_gpu", "column_range_gpu"),
    "missing": ("estep_stats_missing_gpu", "log_prob_missing_gpu"),
}
#: modules importable without numba-cuda (the others import it)
_HOST_ONLY = ("device", "stream")
_OWNER = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_OWNER)


def _module(name):
    return importlib.import_module("." + _OWNER[name], __name__)


def __getattr__(name):
    if name not in _OWNER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _OWNER[name] not in _HOST_ONLY:
        _module("require_gpu").require_gpu()
    return getattr(_module(name), name)


def __dir__():
    return sorted(set(globals()) | set(_OWNER))
