"""Pure computation: arrays/frames in, arrays/frames out. No IO, no Prefect, no Dask.

Every public function takes NumPy or CuPy arrays and returns the same kind; the backend is
chosen by the caller (``alphapulse.pipelines.runtime.backend``), never here.
"""
