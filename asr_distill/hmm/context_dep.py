"""The phonetic decision tree as a Kaldi EventMap, and Kaldi's ContextDependency format.

A tree maps an event (the phones at the ``N`` window positions and a pdf-class) to a
pdf-id (a leaf). Nodes are Kaldi's EventMaps:

``ConstantNode`` (``CE``)  a leaf
``SplitNode`` (``SE``)     yes-child if the value of ``key`` is in ``yes_set``, else no-child
``TableNode`` (``TE``)     child ``table[value of key]`` (None = ``NULL``: undefined)

Keys are window positions ``0..N-1`` and -1 for the pdf-class. Kaldi's binary form
(what ``ContextDependency.__getstate__`` holds and Kaldi's ``tree`` files contain) is::

    ContextDependency <N> <P> ToPdf <EventMap> EndContextDependency

with each token followed by a space, a signed int32 as byte 4 + 4 little-endian bytes,
an uint32 (the TE table size) as byte 0xFC + 4 bytes and the SE yes-set as byte 4,
raw int32 length, raw int32 values.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kaldi_hmm_gmm
import numpy as np

from asr_distill.errors import InputError
from asr_distill.hmm.tree_stats import PDF_CLASS_KEY


@dataclass(eq=False)
class ConstantNode:
    """Leaf: answer ``leaf`` (a pdf-id)."""

    leaf: int


@dataclass(eq=False)
class SplitNode:
    """``yes`` if the event's value of ``key`` is in ``yes_set`` (sorted), else ``no``.

    ``gain`` is the log-likelihood gain of the split when the tree was built (0 if read).
    """

    key: int
    yes_set: tuple[int, ...]
    yes: Node
    no: Node
    gain: float = 0.0


@dataclass(eq=False)
class TableNode:
    """``table[value]`` for the event's value of ``key``; None or out of range: undefined."""

    key: int
    table: list[Node | None]


Node = ConstantNode | SplitNode | TableNode


@dataclass
class TreeBuildInfo:
    """Numbers from building a tree (see :func:`asr_distill.hmm.tree.build_tree`)."""

    num_stub_leaves: int  # leaves before splitting (one per root or root and pdf-class)
    num_leaves_split: int  # leaves after splitting, before post-clustering
    num_splits: int
    split_gain: float  # total log-likelihood gain of the splits
    smallest_split_gain: float
    cluster_thresh: float
    num_merged: int  # leaves removed by post-clustering
    cluster_loss: float  # log-likelihood lost by post-clustering (>= 0)


def _key_name(key: int, width: int, center: int) -> str:
    if key == PDF_CLASS_KEY:
        return "pdf-class"
    if width == 3 and center == 1:
        return ("left", "centre", "right")[key]
    return "centre" if key == center else f"pos{key}"


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def token(self, tok: str) -> None:
        self.parts.append(tok.encode() + b" ")

    def int32(self, v: int) -> None:
        self.parts.append(b"\x04" + struct.pack("<i", v))

    def uint32(self, v: int) -> None:
        self.parts.append(b"\xfc" + struct.pack("<I", v))

    def int_vector(self, v: Sequence[int]) -> None:
        self.parts.append(b"\x04" + struct.pack(f"<i{len(v)}i", len(v), *v))


class _Reader:
    def __init__(self, data: bytes, path: str | Path | None):
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> InputError:
        return InputError(f"bad ContextDependency at byte {self.pos}: {what}", self.path)

    def token(self) -> str:
        end = self.data.find(b" ", self.pos)
        if end < 0:
            raise self.fail("expected a token")
        tok = self.data[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return tok

    def expect(self, tok: str) -> None:
        got = self.token()
        if got != tok:
            raise self.fail(f"expected {tok!r}, got {got!r}")

    def basic(self, size_byte: int, fmt: str) -> int:
        if self.data[self.pos : self.pos + 1] != bytes([size_byte]):
            raise self.fail("expected a binary integer")
        (v,) = struct.unpack_from(fmt, self.data, self.pos + 1)
        self.pos += 5
        return int(v)

    def int32(self) -> int:
        return self.basic(4, "<i")

    def uint32(self) -> int:
        return self.basic(0xFC, "<I")

    def int_vector(self) -> tuple[int, ...]:
        if self.data[self.pos : self.pos + 1] != b"\x04":
            raise self.fail("expected an int32 vector")
        (n,) = struct.unpack_from("<i", self.data, self.pos + 1)
        values = struct.unpack_from(f"<{n}i", self.data, self.pos + 5)
        self.pos += 5 + 4 * n
        return tuple(int(v) for v in values)

    def event_map(self) -> Node | None:
        tok = self.token()
        if tok == "NULL":
            return None
        if tok == "CE":
            return ConstantNode(self.int32())
        if tok == "TE":
            key, size = self.int32(), self.uint32()
            self.expect("(")
            table = [self.event_map() for _ in range(size)]
            self.expect(")")
            return TableNode(key, table)
        if tok == "SE":
            key, yes_set = self.int32(), self.int_vector()
            self.expect("{")
            yes, no = self.event_map(), self.event_map()
            self.expect("}")
            if yes is None or no is None:
                raise self.fail("NULL child of SE")
            return SplitNode(key, yes_set, yes, no)
        raise self.fail(f"unknown EventMap token {tok!r}")


@dataclass
class Tree:
    """A phonetic decision tree (Kaldi's ContextDependency).

    Attributes:
        root: top EventMap node (normally a TE on the central position).
        num_pdfs: number of leaves; leaves are numbered ``0..num_pdfs-1``.
        context_width: N (3 = triphone).
        central_position: P.
        build_info: statistics of building, when built here.
    """

    root: Node
    num_pdfs: int
    context_width: int = 3
    central_position: int = 1
    build_info: TreeBuildInfo | None = field(default=None, compare=False)

    def _col(self, key: int) -> int:
        return self.context_width if key == PDF_CLASS_KEY else key

    def leaf(self, event: Sequence[int]) -> int:
        """The pdf-id of ``event = (phone_0, ..., phone_{N-1}, pdf_class)``, e.g.
        ``(l, c, r, pdf_class)``. Raises KeyError where the tree is undefined
        (a central phone without a root, a pdf-class out of range)."""
        if len(event) != self.context_width + 1:
            raise ValueError(f"event needs {self.context_width + 1} values, got {len(event)}")
        node: Node | None = self.root
        while not isinstance(node, ConstantNode):
            if node is None:
                raise KeyError(f"tree has no pdf for event {tuple(event)}")
            v = int(event[self._col(node.key)])
            if isinstance(node, SplitNode):
                node = node.yes if v in node.yes_set else node.no
            else:
                node = node.table[v] if 0 <= v < len(node.table) else None
        return node.leaf

    def leaves_of(self, events: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`leaf`: ``(E, N+1)`` events -> ``(E,)`` pdf-ids, -1 where undefined."""
        events = np.asarray(events)
        out = np.full(len(events), -1, dtype=np.int64)

        def walk(node: Node | None, idx: np.ndarray) -> None:
            if node is None or len(idx) == 0:
                return
            if isinstance(node, ConstantNode):
                out[idx] = node.leaf
                return
            v = events[idx, self._col(node.key)]
            if isinstance(node, SplitNode):
                yes = np.isin(v, node.yes_set)
                walk(node.yes, idx[yes])
                walk(node.no, idx[~yes])
                return
            groups: dict[int, tuple[Node, list[np.ndarray]]] = {}
            for val in np.unique(v):
                child = node.table[val] if 0 <= val < len(node.table) else None
                if child is not None:
                    groups.setdefault(id(child), (child, []))[1].append(idx[v == val])
            for child, parts in groups.values():
                walk(child, np.concatenate(parts))

        walk(self.root, np.arange(len(events)))
        return out

    # ---- Kaldi formats -------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Kaldi's binary ContextDependency (no ``\\0B`` header), as ``__getstate__`` holds."""
        w = _Writer()
        w.token("ContextDependency")
        w.int32(self.context_width)
        w.int32(self.central_position)
        w.token("ToPdf")

        def emit(node: Node | None) -> None:
            if node is None:
                w.token("NULL")
            elif isinstance(node, ConstantNode):
                w.token("CE")
                w.int32(node.leaf)
            elif isinstance(node, TableNode):
                w.token("TE")
                w.int32(node.key)
                w.uint32(len(node.table))
                w.token("(")
                for child in node.table:
                    emit(child)
                w.token(")")
            else:
                w.token("SE")
                w.int32(node.key)
                w.int_vector(node.yes_set)
                w.token("{")
                emit(node.yes)
                emit(node.no)
                w.token("}")

        emit(self.root)
        w.token("EndContextDependency")
        return b"".join(w.parts)

    @classmethod
    def from_bytes(cls, data: bytes, path: str | Path | None = None) -> Tree:
        """Parse Kaldi's binary ContextDependency (an optional ``\\0B`` header is skipped)."""
        r = _Reader(bytes(data), path)
        if r.data.startswith(b"\x00B"):
            r.pos = 2
        r.expect("ContextDependency")
        width, center = r.int32(), r.int32()
        r.expect("ToPdf")
        root = r.event_map()
        r.expect("EndContextDependency")
        if root is None:
            raise r.fail("empty tree")
        leaves = {n.leaf for n in _iter_nodes(root) if isinstance(n, ConstantNode)}
        return cls(root, max(leaves) + 1, width, center)

    def to_text(self) -> str:
        """Kaldi's text ContextDependency, as ``str(ContextDependency)`` prints it."""
        parts = [f"ContextDependency {self.context_width} {self.central_position} ToPdf "]

        def emit(node: Node | None) -> None:
            if node is None:
                parts.append("NULL ")
            elif isinstance(node, ConstantNode):
                parts.append(f"CE {node.leaf} ")
            elif isinstance(node, TableNode):
                parts.append(f"TE {node.key} {len(node.table)} ( ")
                for child in node.table:
                    emit(child)
                parts.append(") \n")
            else:
                values = "".join(f"{v} " for v in node.yes_set)
                parts.append(f"SE {node.key} [ {values}]\n{{ ")
                emit(node.yes)
                emit(node.no)
                parts.append("} \n")

        emit(self.root)
        parts.append("EndContextDependency ")
        return "".join(parts)

    def to_context_dependency(self) -> kaldi_hmm_gmm.ContextDependency:
        """The tree as kaldi-hmm-gmm's ContextDependency (via its binary state)."""
        ctx = kaldi_hmm_gmm.ContextDependency.__new__(kaldi_hmm_gmm.ContextDependency)
        ctx.__setstate__(([b - 256 if b > 127 else b for b in self.to_bytes()],))
        return ctx

    @classmethod
    def from_context_dependency(cls, ctx: kaldi_hmm_gmm.ContextDependency) -> Tree:
        return cls.from_bytes(bytes(b & 0xFF for b in ctx.__getstate__()[0]))

    def write(self, path: str | Path) -> None:
        """Write a Kaldi binary ``tree`` file (``\\0B`` + ContextDependency)."""
        Path(path).write_bytes(b"\x00B" + self.to_bytes())

    @classmethod
    def read(cls, path: str | Path) -> Tree:
        """Read a Kaldi binary ``tree`` file (as written by :meth:`write` or Kaldi)."""
        return cls.from_bytes(Path(path).read_bytes(), path)

    # ---- readable dump ---------------------------------------------------------------

    def dump(self, phone_names: Mapping[int, str] | None = None) -> str:
        """A readable dump, one node a line, children indented by two spaces::

            root: table on centre
              centre in {1}: table on pdf-class
                pdf-class in {0}: leaf 0
              centre in {2 3}: if right in {2 4} (gain 1234.5)
                yes: leaf 3
                no: leaf 4

        A TE line lists, per distinct child, all values mapping to it (a root shared by
        several phones is printed once). Phones are shown by name when ``phone_names``
        (id -> symbol) is given; pdf-classes and leaves always as numbers.
        """
        names = phone_names or {}

        def fmt(key: int, values: Sequence[int]) -> str:
            if key == PDF_CLASS_KEY:
                return " ".join(str(v) for v in values)
            return " ".join(names.get(v, str(v)) for v in values)

        lines: list[str] = []

        def emit(node: Node, label: str, depth: int) -> None:
            pad = "  " * depth
            if isinstance(node, ConstantNode):
                lines.append(f"{pad}{label}: leaf {node.leaf}")
                return
            kname = _key_name(node.key, self.context_width, self.central_position)
            if isinstance(node, SplitNode):
                gain = f" (gain {node.gain:.1f})" if node.gain else ""
                lines.append(f"{pad}{label}: if {kname} in {{{fmt(node.key, node.yes_set)}}}{gain}")
                emit(node.yes, "yes", depth + 1)
                emit(node.no, "no", depth + 1)
                return
            lines.append(f"{pad}{label}: table on {kname}")
            groups: dict[int, tuple[Node, list[int]]] = {}
            for v, child in enumerate(node.table):
                if child is not None:
                    groups.setdefault(id(child), (child, []))[1].append(v)
            for child, values in groups.values():
                emit(child, f"{kname} in {{{fmt(node.key, values)}}}", depth + 1)

        emit(self.root, "root", 0)
        header = (
            f"# tree: context-width {self.context_width}, central-position "
            f"{self.central_position}, {self.num_pdfs} pdfs"
        )
        return "\n".join([header, *lines]) + "\n"


def _iter_nodes(root: Node) -> Iterator[Node]:
    """Every node once (shared subtrees once)."""
    seen: set[int] = set()
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, SplitNode):
            stack += [node.yes, node.no]
        elif isinstance(node, TableNode):
            stack += [c for c in node.table if c is not None]
