"""Reading a config: YAML in, a :class:`~alphapulse.pipelines.config.schema.Config` out, or one line
saying what is wrong.

Implements :func:`load_config` (a file, or the shipped default), :func:`parse_config` (a mapping),
:func:`default_config_text`, the bounds checked before anything recursive reads a config
(:data:`MAX_CONFIG_BYTES`, :data:`MAX_CONFIG_DEPTH`, keys given twice), the keys that were
renamed (:data:`RENAMED_KEYS`), and pydantic's errors as one line naming the key, its closest
valid name and its documented range. Only ``yaml.safe_load`` is used: a config can never
construct Python objects.
"""
from __future__ import annotations

import reprlib
import typing
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from alphapulse.pipelines.config.base import suggest
from alphapulse.pipelines.config.schema import Config
from alphapulse.pipelines.errors import ConfigError

RENAMED_KEYS = {
    ("backtest", "walk_forward", "in_sample_bars"): "train_bars",
    ("backtest", "walk_forward", "out_of_sample_bars"): "test_bars",
}
"""Keys of earlier configs -> their new names: a config that still uses one is refused naming
the new key (a silent alias would leave two spellings in users' files)."""


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model = _model_at(parent)
            hint = suggest(str(e["loc"][-1]), model.model_fields) if model else ""
            lines.append(f"{source}: {where}: unknown key{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] in _BOUND_ERRORS:
                msg += _range_note(e["loc"])
            # reprlib: a YAML alias bomb or a huge list must not become a gigabyte error message
            lines.append(f"{source}: {where}: {msg} (got {_SHORT.repr(e.get('input'))})")
    if len(lines) > 5:
        lines = lines[:5] + [f"and {len(lines) - 5} more"]
    return "; ".join(lines)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60

MAX_CONFIG_BYTES = 1 << 20
"""A config is a few kilobytes; anything over 1 MiB is refused before it is parsed."""

MAX_CONFIG_DEPTH = 32
"""Nested mappings and lists a config may hold (the deepest key is 5 levels down); PyYAML's
composer and pydantic recurse per level, so 600 levels were a RecursionError traceback."""


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _range_note(loc) -> str:
    """``"; range [lo, hi]"`` of the field (or list item) at ``loc``, from its declared bounds:
    pydantic names only the bound that failed, the documented range has both."""
    keys = list(loc)
    item = False
    while keys and isinstance(keys[-1], int):  # an item of a list field: the item type's bounds
        keys.pop()
        item = True
    model = _model_at(keys[:-1]) if keys else None
    field = model.model_fields.get(str(keys[-1])) if model is not None else None
    if field is None:
        return ""
    metadata = list(field.metadata)
    if item:
        args = typing.get_args(field.annotation)
        metadata = [m for f in typing.get_args(args[0])[1:] if args for m in getattr(f, "metadata", [f])]
    lo = hi = None
    for m in metadata:
        for attr, side in (("ge", "["), ("gt", "(")):
            if getattr(m, attr, None) is not None:
                lo = f"{side}{_number(getattr(m, attr))}"
        for attr, side in (("le", "]"), ("lt", ")")):
            if getattr(m, attr, None) is not None:
                hi = f"{_number(getattr(m, attr))}{side}"
    if lo is None and hi is None:
        return ""
    return f"; range {lo or '(-inf'}, {hi or 'inf)'}"


def _number(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _model_at(loc) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for key in loc:
        if isinstance(key, int):  # a list's item: the list field already named the item's model
            continue
        field = model.model_fields.get(str(key))
        ann = getattr(field, "annotation", None)
        # an optional block (``walk_forward: WalkForwardConfig | None``) names its model too
        options = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(options) != 1:
            return None
        model = options[0]
    return model


def default_config_text() -> str:
    """The documented default config shipped with the package."""
    return resources.files("alphapulse.pipelines.config").joinpath("default_config.yaml").read_text()


def parse_config(data: dict | None, *, source: str = "config") -> Config:
    """Validate a mapping (e.g. parsed YAML) into a :class:`Config`; errors name ``source`` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _refuse_deep_data(data, source=source)
    _refuse_renamed_keys(data, source=source)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def with_block(config: Config, key: str, block: dict, *, source: str) -> Config:
    """``config`` with its top-level block ``key`` replaced by ``block`` (a mapping, validated as a
    config's would be; errors name ``source``), e.g. a flow parameter's ``signals``."""
    if not isinstance(block, dict):
        raise ConfigError(f"{source}: expected a mapping for {key}, got {type(block).__name__}")
    return parse_config({**config.model_dump(mode="json"), key: block}, source=source)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML config; ``None`` gives the shipped default config.

    Only ``yaml.safe_load`` is used: a config can never construct Python objects.
    """
    if path is None:
        return parse_config(yaml.safe_load(default_config_text()), source="default config")
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise ConfigError(f"{path}: not a regular file")  # a FIFO or /dev/zero would block or never end
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    _refuse_deep_yaml(text, source=str(path))
    try:
        data = yaml.safe_load(text)
    except ValueError as e:  # a constructor's own error, e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())[:200]}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    _refuse_repeated_keys(text, source=str(path))
    return parse_config(data, source=str(path))


def _refuse_renamed_keys(data: dict, *, source: str) -> None:
    """A ``ConfigError`` naming the new key for each key of :data:`RENAMED_KEYS` in ``data``."""
    found = []
    for path, new in RENAMED_KEYS.items():
        node = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            found.append(f"{'.'.join(path)} was renamed {new}")
    if found:
        raise ConfigError(f"{source}: {'; '.join(found)}")


def _refuse_deep_yaml(text: str, *, source: str) -> None:
    """A ``ConfigError`` for YAML nested more than :data:`MAX_CONFIG_DEPTH` levels, found in the
    parser's event stream (a loop, no recursion) before anything recursive reads the text. A
    syntax error is left for ``safe_load`` to report with its own message."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_CONFIG_DEPTH:
                    raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep at line "
                                      f"{event.start_mark.line + 1} (a config is a few levels deep)")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return


def _refuse_deep_data(data, *, source: str) -> None:
    """The same bound on an already parsed mapping (``parse_config`` from Python), walked with a
    stack; each container is visited once, so shared (aliased) ones cost nothing."""
    stack, seen = [(data, 1)], set()
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep "
                              "(a config is a few levels deep)")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _refuse_repeated_keys(text: str, *, source: str) -> None:
    """A ``ConfigError`` for a key given twice in one mapping: YAML loaders keep the last silently,
    so a pasted second ``data:`` block would quietly replace the first. Walks the composed node
    graph (no objects are constructed), each node once, so anchors and aliases cost nothing."""
    seen: set[int] = set()
    stack = [(yaml.compose(text, Loader=yaml.SafeLoader), "")]
    while stack:
        node, where = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name in lines:
                    raise ConfigError(f"{source}: {where + name}: key given twice (lines {lines[name]} and "
                                      f"{key.start_mark.line + 1}); keep one")
                if name is not None:
                    lines[name] = key.start_mark.line + 1
                stack.append((value, f"{where}{name}."))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, where) for item in node.value)

