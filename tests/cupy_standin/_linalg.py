"""NumPy linear algebra with CuPy's failure semantics: where LAPACK (and so NumPy) raises
``LinAlgError``, cuSOLVER only sets a status that CuPy does not check by default
(``cupyx.errstate(linalg="ignore")``), and the caller gets a plausible-looking or non-finite
result. These functions work on host arrays; :mod:`tests.cupy_standin._core` wraps them for device
arrays, and :func:`tests.transforms.risk_testlib.cupy_like_numpy` uses them as they are."""
from __future__ import annotations

import math

import numpy as np


def unchecked_cholesky(a):
    """What cuSOLVER's ``potrf`` leaves when CuPy does not check its status: the lower factor
    computed column by column (left-looking, as LAPACK's unblocked ``potf2``) up to the first
    pivot that is not positive, that pivot's value in place, the columns after it untouched.
    No exception, and finite for finite input. (cuSOLVER documents only the status; the content
    after a failure is LAPACK's here, one plausible garbage among many.)"""
    low = np.tril(np.array(a, dtype=np.result_type(a, np.float32)))
    for j in range(low.shape[0]):
        d = low[j, j] - low[j, :j] @ low[j, :j]
        if not d > 0:
            low[j, j] = d
            break
        low[j, j] = math.sqrt(d)
        low[j + 1:, j] = (low[j + 1:, j] - low[j + 1:, :j] @ low[j, :j]) / low[j, j]
    return low


def unchecked_solve(a, b):
    """CuPy's ``solve`` of a singular matrix: LU's zero pivot divides, giving non-finite values."""
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.full(np.shape(b), np.nan)


def batched_cholesky(a):
    """:func:`unchecked_cholesky` over a stack of matrices (CuPy factors stacks in one call). A
    positive definite matrix takes LAPACK's factor (the same up to rounding, and fast)."""
    a = np.asarray(a)
    try:
        return np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        pass
    out = np.empty(a.shape, dtype=np.result_type(a, np.float32))
    for idx in np.ndindex(a.shape[:-2]):
        out[idx] = unchecked_cholesky(a[idx])
    return out


def unchecked_inv(a):
    """CuPy's ``inv`` of a singular matrix (LU then solve against the identity): non-finite."""
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.full(np.shape(a), np.nan, dtype=np.result_type(a, np.float32))


def unchecked_eigh(a, UPLO="L"):
    """``eigh`` that returns NaN eigenpairs where LAPACK's did not converge (NaN input), as
    ``syevd``'s unchecked status does on CuPy."""
    try:
        return np.linalg.eigh(a, UPLO=UPLO)
    except np.linalg.LinAlgError:
        dtype = np.result_type(a, np.float32)
        return np.full(np.shape(a)[:-1], np.nan, dtype=dtype), np.full(np.shape(a), np.nan, dtype=dtype)


def unchecked_eigvalsh(a, UPLO="L"):
    """``eigvalsh`` with NaN eigenvalues where LAPACK's did not converge."""
    return unchecked_eigh(a, UPLO)[0]


def unchecked_lstsq(a, b, rcond=None):
    """``lstsq`` (CuPy's is SVD based) with NaN results where the SVD did not converge."""
    try:
        return np.linalg.lstsq(a, b, rcond=rcond)
    except np.linalg.LinAlgError:
        n = np.shape(a)[1]
        x_shape = (n,) + tuple(np.shape(b)[1:])
        dtype = np.result_type(a, b, np.float32)
        return (np.full(x_shape, np.nan, dtype=dtype), np.empty((0,), dtype=dtype), np.int64(0),
                np.full(min(np.shape(a)), np.nan, dtype=dtype))


def unchecked_solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                               check_finite=False):
    """``cupyx.scipy.linalg.solve_triangular``: cuBLAS ``trsm`` divides by a zero diagonal without
    a status at all, so a singular triangle gives non-finite values where SciPy raises."""
    import scipy.linalg

    try:
        return scipy.linalg.solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit_diagonal,
                                             check_finite=False)
    except np.linalg.LinAlgError:
        return np.full(np.shape(b), np.nan, dtype=np.result_type(a, b, np.float32))
