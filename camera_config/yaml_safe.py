"""Parse a config file's YAML with the guards a hand-edited file needs: no key twice, no bombs.

PyYAML's ``safe_load`` keeps the last of two equal keys silently, and builds a document of any size:
an alias "bomb" (``&a [*a, *a]`` nested) is a few hundred bytes that a validator walks as billions of
items. Here the document is composed to nodes first (libyaml's C parser where installed, which also
caps flow nesting), checked — each mapping's keys unique, with both line numbers; the node count with
every alias expanded at most :data:`MAX_NODES`; no deeper than :data:`MAX_DEPTH`; no alias inside
itself — and only then built into Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_CONFIG_BYTES = 1_000_000
"""Largest site file read: the example site is 1.5 kB; 1 MB holds about 1,100 cameras with 5 zones each.
The 12 MB file of issue 14 took 57 s to validate; now it is refused before it is read (0.3 ms)."""
MAX_NODES = 300_000
"""Most YAML nodes (mappings, lists, scalars; an alias counts as everything it repeats). A 1 MB site
(1,100 cameras, 5 zones each) is 127,600 nodes; it loaded in 7.2 s on the shared 2-core machine
(parse 6.1 s of it under a profiler, the polygon checks 2.8 s)."""
MAX_DEPTH = 40
"""Deepest nesting: a site file needs about 8 levels (cameras > zones > polygon > point > number)."""
_MERGE = "tag:yaml.org,2002:merge"

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class YamlLimitError(yaml.YAMLError):
    """The document breaks a guard; ``loc`` is the field path where (empty for the whole document)."""

    def __init__(self, message: str, loc: tuple[int | str, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass(slots=True)
class _Visit:
    node: Node
    loc: tuple[int | str, ...]
    children: list[tuple[Node, int | str]] = field(default_factory=list)
    next_child: int = 0


def _children(node: Node) -> list[tuple[Node, int | str]]:
    """(child, its key in the field path) for every child node; a mapping's key nodes are children too."""
    if isinstance(node, SequenceNode):
        return [(child, i) for i, child in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out: list[tuple[Node, int | str]] = []
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else "?"
            out += [(key, name), (value, name)]
        return out
    return []


def _check_unique_keys(node: MappingNode, loc: tuple[int | str, ...]) -> None:
    first: dict[tuple[str, str], int] = {}
    for key, _value in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE:
            continue  # a merge (<<) may be overridden on purpose; complex keys do not occur in a config
        line = key.start_mark.line + 1
        seen = first.get((key.tag, key.value))
        first.setdefault((key.tag, key.value), line)
        if seen is not None:  # a second key (maybe on the same line, in a flow mapping {a: 1, a: 2})
            raise YamlLimitError(f"duplicate key {key.value!r} at line {line} (first at line {seen}): "
                                 f"YAML would keep only the last one; remove one of them", loc)


def check_document(root: Node) -> None:
    """Raise :class:`YamlLimitError` if ``root`` repeats a key, is too big or too deep, or holds itself.

    Every node is visited once (an alias shares its anchor's node); sizes and heights are memoised
    so an alias costs what it expands to without being walked again. Iterative: no recursion limit."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [_Visit(root, (), _children(root))]
    on_path.add(id(root))
    while stack:
        top = stack[-1]
        if top.next_child == 0 and isinstance(top.node, MappingNode):
            _check_unique_keys(top.node, top.loc)
        if top.next_child < len(top.children):
            child, key = top.children[top.next_child]
            top.next_child += 1
            if id(child) in on_path:
                raise YamlLimitError("an alias refers to the mapping or list it is in (a recursive "
                                     "document)", top.loc)
            if id(child) not in size:
                on_path.add(id(child))
                stack.append(_Visit(child, (*top.loc, key), _children(child)))
            continue
        stack.pop()
        on_path.discard(id(top.node))
        kids = [c for c, _ in top.children]
        size[id(top.node)] = 1 + sum(size[id(c)] for c in kids)
        height[id(top.node)] = 1 + max((height[id(c)] for c in kids), default=0)
        if size[id(top.node)] > MAX_NODES:
            raise YamlLimitError(f"more than {MAX_NODES:,} YAML nodes with aliases expanded (an alias "
                                 f"bomb, or far more than a site needs)", top.loc)
        if height[id(top.node)] > MAX_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels", top.loc)


def parse_yaml(text: str) -> Any:
    """The one YAML document in ``text`` as Python objects (None when empty), after :func:`check_document`.

    Raises :class:`YamlLimitError` for a guard, :class:`yaml.YAMLError` for bad YAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        check_document(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()
