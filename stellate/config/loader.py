"""Read ``devices.yaml`` into a :class:`StellateConfig`, or report everything wrong with it.

The file is parsed once into a node tree (for line numbers) and constructed from that same
tree (for values). Before any value is built, the file is held to a budget (``budget.py``:
size, nesting, alias expansion), so no file can cost more than its limits. Checks then run in
layers, each collecting rather than stopping: duplicate keys and duplicate device ids on the raw
document, then types and unknown keys (the converter), then value rules (the model). Bad input
always ends in :class:`ConfigError`, never a traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import yaml
from cattrs.errors import CattrsError

from ..errors import InvalidFields, format_path
from .budget import (
    BudgetLoader,
    FastBudgetLoader,
    LoadLimits,
    OverBudget,
    graph_problem,
    loaders,
    read,
)
from .converter import CONVERTER
from .findings import Finding, findings
from .locate import DuplicateKey, duplicate_keys, locate
from .model import ConfigDocument, StellateConfig
from .problems import ConfigError, Problem, describe

logger = logging.getLogger(__name__)

#: Where ``stellate`` looks when no file is named.
DEFAULT_CONFIG_PATH = "config/galaxy/devices.yaml"

_TOP_LEVEL_HINT = "expected a mapping with a 'devices' list at the top level"


def load_config(
    path: str | os.PathLike[str], *, limits: LoadLimits | None = None
) -> StellateConfig:
    """Load and validate a config file.

    ``limits`` bound what the file may cost (default: :class:`LoadLimits`, its size limit
    raised by ``$STELLATE_MAX_CONFIG_BYTES`` when set).

    Raises:
        ConfigError: the file is missing, unreadable, not a regular file, over its budget, not
            YAML, or not a valid config; its ``problems`` list every problem found.
    """
    source = os.fspath(path)
    try:
        limits = limits or LoadLimits.from_env()
        text = read(source, limits).decode("utf-8-sig")
    except ValueError as exc:  # the environment's limit (UnicodeDecodeError is handled below)
        if isinstance(exc, UnicodeDecodeError):
            message = f"not UTF-8 text (bad byte at offset {exc.start})"
            raise ConfigError([Problem(source, 0, "", message)]) from None
        raise ConfigError([Problem(source, 0, "", str(exc))]) from None
    except OverBudget as exc:
        raise ConfigError([Problem(source, exc.line, exc.field, exc.message)]) from None
    except FileNotFoundError:
        raise ConfigError([Problem(source, 0, "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(source, 0, "", "is a directory, not a YAML file")]) from None
    except OSError as exc:
        message = f"cannot read file: {exc.strerror or exc}"
        raise ConfigError([Problem(source, 0, "", message)]) from None
    config = loads_config(text, source, limits=limits)
    logger.debug("loaded %d devices from %s", len(config.devices), source)
    return config


def loads_config(
    text: str, source: str = "<string>", *, limits: LoadLimits | None = None
) -> StellateConfig:
    """Validate a config given as YAML text; ``source`` names it in problems.

    Raises:
        ConfigError: with every problem found.
    """
    limits = limits or LoadLimits()
    if len(text) > limits.max_bytes:  # characters: at least as many bytes
        message = f"is larger than {limits.max_bytes:,} bytes (the limit)"
        raise ConfigError([Problem(source, 0, "", message)])
    root, data, duplicates = _parse(text, source, limits)
    if root is None:
        raise ConfigError([Problem(source, 1, "", f"empty file: {_TOP_LEVEL_HINT}")])
    if not isinstance(data, dict):
        message = f"{_TOP_LEVEL_HINT}, got {describe(data)}"
        raise ConfigError([Problem(source, locate(root, ()), "", message)])

    problems = [
        Problem(
            source,
            dup.line,
            format_path(dup.path),
            f"duplicate key (first at line {dup.first_line})",
        )
        for dup in duplicates
    ]
    problems += _fleet_problems(root, data, source)

    document: ConfigDocument | None = None
    try:
        document = CONVERTER.structure(data, ConfigDocument)
    except (CattrsError, TypeError, ValueError, KeyError) as exc:
        problems += [_problem(root, source, finding) for finding in findings(exc)]

    if problems or document is None:
        raise ConfigError(sorted(problems, key=lambda problem: problem.line))
    try:
        return StellateConfig(
            devices=document.devices, manager=document.manager, store=document.store, source=source
        )
    except InvalidFields as exc:  # pragma: no cover - _fleet_problems checks the same rules
        raise ConfigError([_problem(root, source, finding) for finding in findings(exc)]) from None


def _parse(
    text: str, source: str, limits: LoadLimits
) -> tuple[yaml.Node | None, Any, list[DuplicateKey]]:
    """Compose the node tree, check its budget, and construct the values from it (one parse,
    both views).

    libyaml parses when it is there (``budget.loaders``); a document it cannot take is parsed
    again by the pure-Python loader, whose messages are the ones reported. Keys written twice
    are collected between composing and constructing: building the values flattens ``<<``
    merges into the node tree, after which a merged key would look like a repeated one.
    """
    *fast, pure = loaders(text)
    for loader_class in fast:
        try:
            return _parse_with(loader_class(text, limits), limits)
        except (yaml.YAMLError, OverBudget):
            break  # say it in the pure loader's words
    try:
        return _parse_with(pure(text, limits), limits)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{what} ({exc.context})"
        kind = (
            "invalid YAML"
            if isinstance(exc, yaml.constructor.ConstructorError)
            else "YAML syntax error"
        )
        raise ConfigError([Problem(source, line, "", f"{kind}: {what}")]) from None
    except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
        raise ConfigError([_reader_problem(text, source, exc)]) from None
    except OverBudget as exc:
        raise ConfigError([Problem(source, exc.line, exc.field, exc.message)]) from None


def _parse_with(
    loader: BudgetLoader | FastBudgetLoader, limits: LoadLimits
) -> tuple[yaml.Node | None, Any, list[DuplicateKey]]:
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None, []
        over = graph_problem(root, limits)
        if over is not None:
            raise over
        duplicates = list(duplicate_keys(root))
        data = loader.construct_document(root)
        return root, data, duplicates
    finally:
        loader.dispose()


def _reader_problem(text: str, source: str, exc: yaml.YAMLError) -> Problem:
    """A character YAML refuses (a control character, say): the reader gives only an offset."""
    position = getattr(exc, "position", 0)
    line = text.count("\n", 0, position) + 1
    detail = " ".join(str(exc).split("\n")[0].split())
    return Problem(source, line, "", f"not valid YAML text: {detail}")


def _fleet_problems(root: yaml.Node, data: dict[Any, Any], source: str) -> list[Problem]:
    """Rules over the device list, checked on the raw data so they hold even when a device
    has other problems: at least one device, and no device_id used twice."""
    devices = data.get("devices")
    if not isinstance(devices, list):
        return []  # missing or mistyped: the converter reports it
    if not devices:
        return [Problem(source, locate(root, ("devices",)), "devices", "no devices configured")]
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(devices):
        device_id = item.get("device_id") if isinstance(item, dict) else None
        if not isinstance(device_id, str):
            continue
        path = ("devices", index, "device_id")
        line = locate(root, path)
        if device_id in first_line:
            first = first_line[device_id]
            message = f"duplicate device_id {device_id!r} (first defined at line {first})"
            problems.append(Problem(source, line, format_path(path), message))
        else:
            first_line[device_id] = line
    return problems


def _problem(root: yaml.Node, source: str, finding: Finding) -> Problem:
    line = locate(root, finding.path, at_key=finding.at_key)
    return Problem(source, line, format_path(finding.path), finding.message)
