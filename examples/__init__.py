"""Examples of AlphaPulse's extension points (importable as ``examples.*`` from a checkout)."""
