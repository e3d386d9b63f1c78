"""The configuration-file engine of deskwire: rule files and the connections file.

One YAML reader whose values remember where they are (:mod:`configfiles.yamltree`), schemas
written as data and checked with every error reported at once, each at its file, line,
column and key path, with "did you mean" for near misses (:mod:`configfiles.schema`), and
the small value rules both kinds of file share (link names, durations).

Imports nothing else of ours, so ``rules`` and ``connections`` may both build on it. How
to add a schema: docs/development.md.
"""

from __future__ import annotations

from configfiles.problems import InvalidConfig, Located, in_file_order
from configfiles.schema import (
    INVALID,
    AnyData,
    Boolean,
    Choice,
    Custom,
    Field,
    Integer,
    Kind,
    ListOf,
    Number,
    OneOrList,
    Path,
    PathPart,
    Raw,
    Record,
    Report,
    Text,
    did_you_mean,
    format_path,
    mapping_entries,
    type_name,
)
from configfiles.values import LINK_NAME, is_link_name, parse_duration
from configfiles.yamltree import (
    MAX_NODES,
    Node,
    ParseStore,
    YamlProblem,
    parse_yaml,
    parse_yaml_cached,
)

__all__ = [
    "INVALID",
    "LINK_NAME",
    "MAX_NODES",
    "AnyData",
    "Boolean",
    "Choice",
    "Custom",
    "Field",
    "Integer",
    "InvalidConfig",
    "Kind",
    "ListOf",
    "Located",
    "Node",
    "Number",
    "OneOrList",
    "ParseStore",
    "Path",
    "PathPart",
    "Raw",
    "Record",
    "Report",
    "Text",
    "YamlProblem",
    "did_you_mean",
    "format_path",
    "in_file_order",
    "is_link_name",
    "mapping_entries",
    "parse_duration",
    "parse_yaml",
    "parse_yaml_cached",
    "type_name",
]
