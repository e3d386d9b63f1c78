"""Validated rule files kept between processes, so a new process neither parses nor validates
10,000 rules again.

After the parse store (``ParseStore``: parsed trees), validating the trees into frozen
records was most of a load. This keeps each valid file's :class:`ParsedFile` (its rules,
conditions and steps) in the same store, under a key made of

- a digest of the **code** that turns text into records: every module of this package
  (and of ``configfiles``, when installed), the Python version and the versions of the
  parser and the template engine, so any change of either is a miss, never a stale record;
- the file's path and its :func:`file_digest` (name and content).

An entry is checked by a digest of its own content and read by an unpickler that builds
only the record classes of this package, a few stdlib types, compiled templates (compiled
again from their source, through the template cache) and registered operators (by name);
anything else is refused and costs a parse. Files with errors are not kept: their errors
are found again, exactly where they were.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
import sys
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
from ruamel.yaml import __version__ as ruamel_version

from configfiles import ParseStore
from rules._operators import OPERATORS, Operator
from rules._templates import CompiledTemplate, compile_template

# Packages whose code decides what a rule file becomes.
_CODE_PACKAGES = ("rules", "configfiles")
# Stdlib callables an entry may name besides this package's classes (rebuilt values).
_STDLIB = {("re", "_compile"), ("builtins", "frozenset"), ("builtins", "set")}


@lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the code and library versions that make records from rule text."""
    digest = hashlib.sha256(
        f"deskwire-rule-records-1:{sys.version}:{jinja2.__version__}:{ruamel_version}".encode()
    )
    for package in _CODE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            for source in sorted(Path(folder).rglob("*.py")):
                digest.update(source.relative_to(folder).as_posix().encode() + b"\0")
                digest.update(source.read_bytes())
    return digest.hexdigest()


def records_key(path: str, file_digest: bytes) -> str:
    """The store key of the records of one file (see the module doc)."""
    return hashlib.sha256(f"records\0{code_version()}\0{path}\0".encode() + file_digest).hexdigest()


def get(store: ParseStore, key: str) -> Any | None:
    """The records kept under ``key``, or ``None`` (missing, damaged or refused)."""
    data = store.get(key)
    if data is None or len(data) < 32:
        return None
    digest, payload = data[:32], data[32:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    try:
        return _Unpickler(io.BytesIO(payload)).load()
    except Exception:  # noqa: BLE001 - any unreadable entry only means parsing again
        return None


def put(store: ParseStore, key: str, records: object) -> None:
    """Keep ``records`` under ``key`` (best effort, like the store itself)."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(records)
    except (pickle.PicklingError, TypeError, AttributeError):
        return  # a value this module cannot rebuild: the file is parsed each time
    payload = buffer.getvalue()
    store.put(key, hashlib.sha256(payload).digest() + payload)


def _mapping(items: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(items)


def _operator(name: str) -> Operator:
    return OPERATORS[name]


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MappingProxyType):
            return _mapping, (dict(obj),)
        if isinstance(obj, CompiledTemplate):
            return compile_template, (obj.source,)
        if isinstance(obj, Operator):
            return _operator, (obj.name,)
        return NotImplemented


_CALLABLES = {("rules._records", "_mapping"), ("rules._records", "_operator")}
_CALLABLES |= {("rules._templates", "compile_template")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CALLABLES or (module, name) in _STDLIB:
            return super().find_class(module, name)
        if module.startswith(("rules.", "configfiles.")):
            found = super().find_class(module, name)
            if isinstance(found, type) and not issubclass(found, BaseException):
                return found  # a record class of this package or of the config engine
        raise pickle.UnpicklingError(f"{module}.{name} is not a rule record")
