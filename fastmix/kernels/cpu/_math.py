"""Scalar helpers for the kernels: a vectorisable ``exp`` for non-positive arguments.

The PyPI build of llvmlite has no SVML, so ``math.exp`` inside a loop is a scalar libm call and
stops the loop from vectorising.  ``exp_nonpos`` is branch-free arithmetic (Cody-Waite range
reduction, a degree-13 Taylor polynomial, and the power of two built from its bits), so LLVM can
vectorise a loop over components.  Measured relative error against ``np.exp`` on [-700, 0]:
below 4e-16 (see tests/test_kernels.py::test_exp_nonpos).
"""
import math

import numpy as np

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import kernel

LOG2E = 1.4426950408889634
LN2_HI = 0.693147180369123816490  # high bits of ln 2 (exactly representable with trailing zeros)
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI
EXP_MIN_ARG = -700.0  # exp(-700) is still a normal double; callers clamp below this


@intrinsic
def _int64_bits_as_float64(typingctx, x):
    """Reinterpret the bits of an int64 as a float64 (no conversion)."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _float64_bits_as_int64(typingctx, x):
    """Reinterpret the bits of a float64 as an int64 (no conversion)."""
    if not isinstance(x, types.Float):
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


#: 1.5 * 2**52: a float64 n + ROUND_MAGIC holds the integer n in its low mantissa bits.
ROUND_MAGIC = 6755399441055744.0


# No re-association here: the two-part ln 2 reduction must be evaluated as written.  Inlined
# into its one caller (``estep._row_responsibilities``): compiled on its own it cost ~0.1-0.2 s
# of every first fit (optimised alone and again once linked in); results are bit-identical.
@kernel(fastmath={"contract"}, inline="always")
def exp_nonpos(t):
    """exp(t) for EXP_MIN_ARG <= t <= 0 (float64 in, float64 out).

    The exponent n stays a float64 (``np.floor``) and 2**n is built from the bits of
    ``n + ROUND_MAGIC``: with a float -> int64 conversion (which AVX2 has no vector
    instruction for) LLVM kept the loop over components scalar; this way 16 exponentials of a
    row took 31 instead of 55 ns (measured, one thread), with bit-identical results."""
    n = np.floor(t * LOG2E + 0.5)
    r = (t - n * LN2_HI) - n * LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _int64_bits_as_float64((_float64_bits_as_int64(n + ROUND_MAGIC) + 1023) << 52)
    return p * scale


#: sqrt(2): the mantissa of ``log_pos``'s argument is reduced to [sqrt(1/2), sqrt(2)).
SQRT2 = 1.4142135623730951
#: 2**52 with the bits 0x4330000000000000: an exponent field OR-ed into its mantissa reads back
#: as 2**52 + field, so subtracting 2**52 converts it to a float64 without an int conversion.
TWO52 = 4503599627370496.0


@kernel(fastmath={"contract"}, error_model="numpy")
def log_pos(x):
    """log(x) for positive normal float64 x (float64 in, float64 out), branch-free.

    ``x = 2**e m`` with m in [sqrt(1/2), sqrt(2)) from the bits of x; ``log m = 2 atanh(f)``,
    ``f = (m - 1) / (m + 1)`` (|f| <= 0.172), as its odd series to f**21 (truncation below
    1e-18 relative); ``e log 2`` in the two parts of ``exp_nonpos``.  As ``exp_nonpos``, no
    float <-> int64 conversion, so a loop of these vectorises (``math.log`` is a libm call per
    element).  Measured error against ``np.log`` on [1e-300, 1e300] and on [1, 64] (the sums of
    responsibilities it takes in ``pass_diag``): see tests/test_kernels.py::test_log_pos."""
    bits = _float64_bits_as_int64(x)
    ef = _int64_bits_as_float64((bits >> 52) | 0x4330000000000000) - TWO52
    m = _int64_bits_as_float64((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > SQRT2
    m = 0.5 * m if big else m
    e = ef - (1022.0 if big else 1023.0)
    f = (m - 1.0) / (m + 1.0)
    z = f * f
    p = 2.0 / 21.0
    p = p * z + 2.0 / 19.0
    p = p * z + 2.0 / 17.0
    p = p * z + 2.0 / 15.0
    p = p * z + 2.0 / 13.0
    p = p * z + 2.0 / 11.0
    p = p * z + 2.0 / 9.0
    p = p * z + 2.0 / 7.0
    p = p * z + 2.0 / 5.0
    p = p * z + 2.0 / 3.0
    p = p * z + 2.0
    return e * LN2_HI + (f * p + e * LN2_LO)
