"""Parameter grids for strategy sweeps: parsing, checking against a strategy, expansion, sampling.

Grid syntax (``--grid`` on the command line; the same value syntax in the config's
``backtest.grid`` mapping)::

    fast=5:50:5,slow=20:200:10        two parameters, inclusive ranges start:stop:step
    lower=20,25,30;upper=70,75,80     lists; parameters separated by ';', ',' or spaces
    period=10:20:5,30 nbdev=1.5:2.5:0.5

- A parameter is ``name=values``; values are numbers or inclusive ranges ``start:stop[:step]``
  (step 1 when left out), separated by commas. A comma-separated item that contains ``=``
  starts the next parameter, so ``,`` may separate parameters as well as values.
- Integer parameters take integers; float parameters take any number. Ranges are exact in
  decimal (``1.5:2.5:0.5`` is 1.5, 2.0, 2.5), the stop is included when the steps reach it.
- The grid is the Cartesian product of the parameters' values, in the order given; parameters
  left out take the strategy's defaults. A random sample (seeded, without replacement) of the
  product can replace it; the sample keeps the product's order.

Errors are :class:`GridError` (a ``ValueError``) with a one-line message naming the parameter.
"""
from __future__ import annotations

import difflib
import math
import re
from decimal import Decimal, InvalidOperation

import numpy as np

from alphapulse.pipelines.errors import GridError

MAX_VALUES_PER_PARAMETER = 100_000
MAX_COMBINATIONS = 1_000_000
"""The largest product expanded in full; bigger grids need ``random_sample``."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _suggest(word, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


MAX_EXPONENT = 15
"""Grid values are 0 or of magnitude 1e-15 to below 1e16 (1e999999999 made a billion-digit int)."""


def _number(name: str, text: str) -> Decimal:
    text = text.strip()
    if not _NUMBER.match(text):
        raise GridError(f"grid parameter {name!r}: {text!r} is not a number")
    return _in_range(name, Decimal(text), text)


def _in_range(name: str, d: Decimal, shown) -> Decimal:
    if d and not -MAX_EXPONENT <= d.adjusted() <= MAX_EXPONENT:  # adjusted(): the exponent, no arithmetic
        raise GridError(f"grid parameter {name!r}: {str(shown)[:40]!r} is out of range (0, or magnitude 1e-15 to 1e16)")
    return d


def _range(name: str, text: str) -> list[Decimal]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise GridError(f"grid parameter {name!r}: range {text!r} must be start:stop or start:stop:step")
    start, stop = _number(name, parts[0]), _number(name, parts[1])
    step = _number(name, parts[2]) if len(parts) == 3 else Decimal(1)
    if step <= 0:
        raise GridError(f"grid parameter {name!r}: range {text!r} needs a positive step")
    if stop < start:
        raise GridError(f"grid parameter {name!r}: range {text!r} has stop < start")
    count = int((stop - start) / step) + 1
    if count > MAX_VALUES_PER_PARAMETER:
        raise GridError(f"grid parameter {name!r}: range {text!r} has {count:,} values "
                        f"(at most {MAX_VALUES_PER_PARAMETER:,})")
    return [start + k * step for k in range(count)]


def parse_values(name: str, value) -> list:
    """The values of one grid parameter, from a config or command-line value.

    ``value`` is a number, a list of numbers, or a string of comma-separated numbers and
    ``start:stop[:step]`` ranges. Returns numbers (int where integral text, else float) in the
    given order; repeated values are an error.
    """
    if isinstance(value, bool):
        raise GridError(f"grid parameter {name!r}: expected numbers, got {value!r}")
    if isinstance(value, (int, float)):
        items = [Decimal(repr(value)) if isinstance(value, float) else Decimal(value)]
    elif isinstance(value, (list, tuple)):
        if not value:
            raise GridError(f"grid parameter {name!r}: empty list of values")
        items = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise GridError(f"grid parameter {name!r}: expected numbers, got {v!r}")
            for x in (parse_values(name, v) if isinstance(v, str) else [v]):
                items.append(Decimal(repr(x)) if isinstance(x, float) else Decimal(x))
    elif isinstance(value, str):
        pieces = [p.strip() for p in value.split(",")]
        if not value.strip() or any(not p for p in pieces):
            raise GridError(f"grid parameter {name!r}: empty value in {value!r}")
        items = []
        for p in pieces:
            items += _range(name, p) if ":" in p else [_number(name, p)]
    else:
        raise GridError(f"grid parameter {name!r}: expected numbers, a list or 'start:stop:step', got {value!r}")
    out = []
    for d in items:
        try:
            is_int = d == d.to_integral_value() and "." not in str(d) and "e" not in str(d).lower()
        except InvalidOperation:
            raise GridError(f"grid parameter {name!r}: {d} is not a finite number") from None
        if not d.is_finite():
            raise GridError(f"grid parameter {name!r}: {d} is not a finite number")
        _in_range(name, d, d)
        out.append(int(d) if is_int else float(d))
    seen = set()
    for v in out:
        if v in seen:
            raise GridError(f"grid parameter {name!r}: value {v!r} given twice")
        seen.add(v)
    return out


def parse_grid(text: str) -> dict[str, list]:
    """Parse the command-line grid syntax (see the module docstring) into name -> values."""
    if not text or not text.strip():
        raise GridError("empty grid: give e.g. 'fast=5:50:5,slow=20:200:10'")
    raw: dict[str, list[str]] = {}
    current = None
    text = re.sub(r"\s*([=:,])\s*", r"\1", text.strip())  # "fast = 5, 10" reads as "fast=5,10"
    for chunk in re.split(r"[;\s]+", text):
        if not chunk:
            continue
        for item in chunk.split(","):
            item = item.strip()
            if "=" in item:
                name, _, first = item.partition("=")
                name = name.strip()
                if not _NAME.match(name):
                    raise GridError(f"grid: {name!r} is not a parameter name (in {item!r})")
                if name in raw:
                    raise GridError(f"grid parameter {name!r} given twice")
                raw[name] = [first]
                current = name
            elif current is None:
                raise GridError(f"grid: value {item!r} before any 'name=' (syntax: name=values, e.g. fast=5:50:5)")
            else:
                raw[current].append(item)
    return {name: parse_values(name, ",".join(items)) for name, items in raw.items()}


def check_grid(grid: dict[str, list], *, strategy_name: str, params: dict) -> dict[str, list]:
    """Check a parsed grid against a strategy's parameters (name -> type); returns the values cast
    to each parameter's type (float parameters as floats)."""
    out = {}
    for name, values in grid.items():
        if name not in params:
            raise GridError(f"grid parameter {name!r}: not a parameter of {strategy_name}{_suggest(name, params)}; "
                            f"its parameters: {', '.join(params) or '(none)'}")
        kind = params[name]
        cast = []
        for v in values:
            if kind is int:
                if float(v) != int(v) or isinstance(v, float) and not v.is_integer():
                    raise GridError(f"grid parameter {name!r}: {strategy_name}.{name} takes integers, got {v!r}")
                cast.append(int(v))
            else:
                cast.append(kind(v))
        if len(set(cast)) != len(cast):
            raise GridError(f"grid parameter {name!r}: values repeat once cast to {kind.__name__}")
        out[name] = cast
    return out


def grid_size(grid: dict[str, list]) -> int:
    """Number of combinations in the Cartesian product (1 for an empty grid)."""
    return math.prod(len(v) for v in grid.values())


def expand_grid(grid: dict[str, list], *, random_sample: int | None = None, seed: int = 0) -> list[dict]:
    """The grid's combinations, in product order (last parameter fastest), or a seeded random
    sample of ``random_sample`` of them without replacement (all of them when the product is not
    bigger), kept in product order."""
    names = list(grid)
    shape = tuple(len(grid[n]) for n in names)
    total = grid_size(grid)
    if random_sample is not None and random_sample < total:
        rng = np.random.default_rng(seed)
        flat = np.sort(rng.choice(total, size=random_sample, replace=False))
    else:
        if total > MAX_COMBINATIONS:
            raise GridError(f"the grid has {total:,} combinations (more than {MAX_COMBINATIONS:,}); "
                            "set backtest.random_sample to sweep a random sample of them")
        flat = np.arange(total)
    if not names:
        return [{} for _ in flat]
    idx = np.unravel_index(flat, shape)
    return [{n: grid[n][int(i[k])] for n, i in zip(names, idx)} for k in range(len(flat))]
