"""A series kernel calling nested device functions (used by test_kernels.py)."""
from alphapulse.transforms.kernels import device_function, series_kernel


@device_function
def _plus_one(v):
    return v + 1.0


@device_function
def _scaled(v, k):
    return _plus_one(v) * k


@series_kernel
def scaled_column(j, x, k, out):
    for i in range(x.shape[0]):
        out[i, j] = _scaled(x[i, j], k)
