"""Social graphs: k-hop reach, cascade spread and seed selection (IMM).

Influence flows from ``src`` to ``dst``: a "follows" export (follower,
followee) is passed with ``src="followee", dst="follower"``.

Models (Kempe, Kleinberg, Tardos 2003), both in synchronous rounds so that
``max_hops`` means the same in each:

- ``"ic"``, independent cascade: a user activated in round t gets one
  chance, in round t + 1, to activate each inactive out-neighbour with the
  edge's p.
- ``"lt"``, linear threshold: every user draws a threshold uniform in
  (0, 1] and becomes active once the summed p of its active in-neighbours
  reaches it; a user whose in-weights sum above 1 has them scaled to sum
  to 1.

``max_hops=h`` stops every cascade h rounds after the seeds: "after two
layers the spread is gone". Hop-limited cascades are still monotone and
submodular, so IMM keeps its guarantee with reverse-reachable sets cut at
h hops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa

from . import _core
from ._arrow import as_stream

Model = Literal["ic", "lt"]
OnInvalid = Literal["raise", "drop"]

#: ``progress(done, total)``: called about every 100 ms from the calling
#: thread while a long call runs, and once at the end.
ProgressFn = Callable[[int, int], object]

#: Schema-metadata key of the table :meth:`SocialGraph.seeds` returns.
SEEDS_METADATA_KEY = b"referralgraph.imm"


class Spread(NamedTuple):
    """Monte Carlo estimate of a seed set's expected number of active users
    (seeds included)."""

    mean: float
    stderr: float
    simulations: int


def _id_array(ids: Any, what: str) -> pa.Array:
    if isinstance(ids, pa.ChunkedArray):
        return ids.combine_chunks()
    if isinstance(ids, pa.Array):
        return ids
    if isinstance(ids, (str, bytes, int, np.integer)):
        raise TypeError(f"{what} must be a sequence of ids, not a single {type(ids).__name__}")
    if isinstance(ids, Iterable):
        return pa.array(ids if isinstance(ids, np.ndarray) else list(ids))
    raise TypeError(f"{what} must be a sequence or Arrow array of ids, not {type(ids).__name__}")


class SocialGraph:
    """An immutable directed graph with a probability on every edge.

    >>> import pyarrow as pa, referralgraph as rg
    >>> sg = rg.SocialGraph.from_arrow(
    ...     pa.table({"src": [1, 1, 2], "dst": [2, 3, 3]}), p="weighted_cascade")
    >>> sg.num_nodes, sg.num_edges
    (3, 3)
    >>> sg.reach(k=2).column("reach_2").to_pylist()
    [2, 1, 0]

    Users are numbered 0..num_nodes in order of first appearance (a row's
    ``src``, then its ``dst``); ``user_ids()`` maps an index back to an id.
    Self-loops are dropped and duplicate edges merged into one carrying the
    largest of their p; both are counted (``self_loops``,
    ``duplicate_edges``). Safe to share between threads; long calls release
    the GIL.
    """

    __slots__ = ("_g",)
    _g: _core.SocialGraph

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        raise TypeError("build a SocialGraph with SocialGraph.from_arrow(...)")

    @classmethod
    def _wrap(cls, g: _core.SocialGraph) -> SocialGraph:
        obj = object.__new__(cls)
        obj._g = g
        return obj

    @classmethod
    def from_arrow(
        cls,
        edges: Any,
        *,
        src: str = "src",
        dst: str = "dst",
        p: float | str = 0.01,
        on_invalid: OnInvalid = "raise",
        progress: ProgressFn | None = None,
    ) -> SocialGraph:
        """Builds a graph from any Arrow-compatible edge table.

        ``src`` and ``dst`` are integer (any width) or string id columns of
        the same kind. ``p`` is a probability for every edge, the string
        ``"weighted_cascade"`` (p(u, v) = 1 / in-degree(v), counted after
        duplicates and self-loops are removed), or the name of a numeric
        column of per-edge probabilities in [0, 1].

        ``on_invalid="raise"``: a null id or a null, NaN or out-of-range p
        raises InvalidInputError naming the column and row; ``"drop"``
        leaves such rows out and lists them in :attr:`issues`.

        ``progress(done, total)`` is called about every 100 ms while the
        build runs (the rows, then the out- and in-edge sorts); Ctrl-C stops
        it with KeyboardInterrupt.
        """
        kw: dict[str, Any] = {"p_value": None, "weighted_cascade": False, "p_column": None}
        if isinstance(p, str):
            if p == "weighted_cascade":
                kw["weighted_cascade"] = True
            else:
                kw["p_column"] = p
        elif isinstance(p, (int, float)) and not isinstance(p, bool):
            kw["p_value"] = float(p)
        else:
            raise TypeError(f'p must be a float, "weighted_cascade" or a column name, not {p!r}')
        stream = as_stream(edges, "edges")
        return cls._wrap(
            _core.SocialGraph.from_arrow(
                stream, src=src, dst=dst, on_invalid=on_invalid, progress=progress, **kw
            )
        )

    @classmethod
    def _from_referral(cls, graph: _core.ReferralGraph, p: float | str) -> SocialGraph:
        if p == "weighted_cascade":
            return cls._wrap(
                _core.SocialGraph.from_referral(graph, p_value=None, weighted_cascade=True)
            )
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            return cls._wrap(
                _core.SocialGraph.from_referral(graph, p_value=float(p), weighted_cascade=False)
            )
        raise TypeError(f'p must be a float or "weighted_cascade", not {p!r}')

    @property
    def num_nodes(self) -> int:
        return self._g.num_nodes

    @property
    def num_edges(self) -> int:
        """Edges after merging duplicates and dropping self-loops."""
        return self._g.num_edges

    @property
    def duplicate_edges(self) -> int:
        """Rows merged into an earlier edge between the same two users."""
        return self._g.duplicate_edges

    @property
    def self_loops(self) -> int:
        """Rows with ``src == dst``, left out."""
        return self._g.self_loops

    @property
    def id_type(self) -> str:
        return self._g.id_type

    @property
    def nbytes(self) -> int:
        """Heap bytes held (ids, id index, both CSRs)."""
        return self._g.nbytes

    @property
    def issues(self) -> pa.Table:
        """Rows left out with ``on_invalid="drop"``: row, id, column, kind, message."""
        return self._g.issues()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes a versioned, checksummed file (atomically): ids, their
        index and the edges with their probabilities. The build's
        :attr:`issues` are not saved."""
        self._g.save(os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SocialGraph:
        """Reads a file written by :meth:`save`; InvalidInputError if it is
        truncated, corrupt or not a social graph file."""
        return cls._wrap(_core.SocialGraph.load(os.fspath(path)))

    def to_bytes(self) -> bytes:
        """The saved-file bytes (also the pickle payload)."""
        return self._g.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SocialGraph:
        return cls._wrap(_core.SocialGraph.from_bytes(data))

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (SocialGraph.from_bytes, (self.to_bytes(),))

    def user_ids(self) -> pa.Array:
        """The ids of all users, in index order."""
        return self._g.user_ids()

    def edges(self) -> pa.Table:
        """The cleaned edges ``src, dst, p`` (p as float32, as held)."""
        return self._g.edges()

    def reach(
        self,
        k: int = 2,
        *,
        method: Literal["exact", "hll", "auto"] = "exact",
        precision: int = 10,
        progress: ProgressFn | None = None,
    ) -> pa.Table:
        """Per user, ``reach_1 .. reach_k``: distinct other users within
        1..k hops along the edges (the user excluded).

        ``"exact"``: one breadth-first search per user, in parallel
        (uint32 counts). ``"hll"``: HyperBall (Boldi, Rosa, Vigna), a
        HyperLogLog counter of 2^precision registers per user, float64
        estimates with relative standard error about 1.04 / sqrt(2^precision)
        (3.3% at precision 10), memory 2 · num_nodes · 2^precision bytes
        (2 GiB for 1M users at precision 10); when that is more than the
        memory available (the container's cgroup limit counts) it raises
        ``MemoryError`` before allocating, naming a precision that fits.
        ``"auto"``: exact for k = 1, for up to 100,000 users, and for k = 2
        when the BFS would scan at most 2 · 10^9 edges; HyperLogLog
        otherwise, at the largest precision up to ``precision`` whose
        counters take at most half the memory available. The method used
        is in the schema metadata (``b"method"``), and for HyperLogLog the
        precision used (``b"precision"``).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, not {k}")
        table, used, used_precision = self._g.reach(k, method, precision, progress)
        meta = {b"method": used.encode()}
        if used_precision is not None:
            meta[b"precision"] = str(used_precision).encode()
        return table.replace_schema_metadata(meta)

    def spread(
        self,
        seeds: Any,
        *,
        model: Model = "ic",
        simulations: int = 10_000,
        seed: int = 0,
        max_hops: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Spread:
        """Expected number of users the ``seeds`` (ids) activate, seeds
        included, by Monte Carlo: mean and standard error of
        ``simulations`` cascades. A fixed ``seed`` gives the same answer on
        any number of threads. Unknown seed ids raise InvalidInputError."""
        if simulations < 1:
            raise ValueError(f"simulations must be >= 1, not {simulations}")
        if max_hops is not None and max_hops < 0:
            raise ValueError(f"max_hops must be >= 0, not {max_hops}")
        mean, stderr = self._g.spread(
            _id_array(seeds, "seeds"),
            model=model,
            simulations=simulations,
            seed=seed,
            max_hops=max_hops,
            progress=progress,
        )
        return Spread(mean, stderr, simulations)

    def seeds(
        self,
        k: int = 100,
        *,
        model: Model = "ic",
        epsilon: float = 0.1,
        ell: float = 1.0,
        seed: int = 0,
        candidates: Any = None,
        max_hops: int | None = None,
        progress: ProgressFn | None = None,
    ) -> pa.Table:
        """The k users to seed for the largest expected spread, by IMM
        (Tang, Shi, Xiao, SIGMOD 2015): a (1 - 1/e - epsilon)-approximation
        with probability at least 1 - 1/n^ell, with the node-selection phase
        on fresh reverse-reachable sets (W. Chen's 2018 correction).

        Returns ``rank, user_id, marginal_gain, spread``: the estimated
        expected spread each seed adds and the running total. ``candidates``
        (ids) restricts seeds to a segment; the spread still counts every
        user. The schema metadata under :data:`SEEDS_METADATA_KEY` holds
        JSON stats: ``rr_sets`` (theta), ``sampling_rr_sets``, ``rr_bytes``
        (RR sets and inverted index held at the peak), ``lower_bound``;
        :func:`seeds_stats` reads it. A batch of RR sets that would take more
        than a third of the memory available (they are held twice while
        merged, and indexed) stops with ``MemoryError``, which says how
        many sets were needed and how large they were: raise ``epsilon``,
        set ``max_hops`` or lower the probabilities.

        Long calls (``reach``, ``spread``, ``seeds``) release the GIL, call
        ``progress(done, total)`` about every 100 ms (units: users, cascades,
        RR sets of the current batch), and stop with KeyboardInterrupt on
        Ctrl-C.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, not {k}")
        if max_hops is not None and max_hops < 0:
            raise ValueError(f"max_hops must be >= 0, not {max_hops}")
        cands = None if candidates is None else _id_array(candidates, "candidates")
        table, stats = self._g.seeds(
            k,
            model=model,
            epsilon=epsilon,
            ell=ell,
            seed=seed,
            candidates=cands,
            max_hops=max_hops,
            progress=progress,
        )
        meta = {SEEDS_METADATA_KEY: json.dumps(stats).encode()}
        return table.replace_schema_metadata(meta)

    def __repr__(self) -> str:
        return (
            f"SocialGraph(nodes={self.num_nodes:,}, edges={self.num_edges:,}, ids={self.id_type})"
        )


def seeds_stats(table: pa.Table) -> dict[str, Any]:
    """The IMM stats attached to a :meth:`SocialGraph.seeds` table."""
    meta = table.schema.metadata or {}
    if SEEDS_METADATA_KEY not in meta:
        raise ValueError("not a table returned by SocialGraph.seeds")
    stats: dict[str, Any] = json.loads(meta[SEEDS_METADATA_KEY])
    return stats


def degree_heuristics(sg: SocialGraph, k: int, *, p: float | None = None) -> dict[str, list[Any]]:
    """Baseline seed sets: the k users of highest out-degree, and degree
    discount (Chen, Wang, Yang, KDD 2009) with uniform p (default: the mean
    edge p). Ids in pick order; ties by user index."""
    edges = sg.edges()
    ids = sg.user_ids()
    n = sg.num_nodes
    index = {v: i for i, v in enumerate(ids.to_pylist())}
    src = np.fromiter((index[x] for x in edges.column("src").to_pylist()), np.int64, edges.num_rows)
    dst = np.fromiter((index[x] for x in edges.column("dst").to_pylist()), np.int64, edges.num_rows)
    deg = np.bincount(src, minlength=n).astype(np.float64)
    order = np.lexsort((np.arange(n), -deg))
    top = [ids[int(i)].as_py() for i in order[:k]]
    if p is None:
        p = float(np.mean(edges.column("p").to_numpy())) if edges.num_rows else 0.0
    # Degree discount: dd_v = d_v - 2 t_v - (d_v - t_v) t_v p, t_v = seeded in-neighbours.
    out_lists: list[list[int]] = [[] for _ in range(n)]
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        out_lists[s].append(d)
    # Neighbours that a seed influences are its out-neighbours; their discount counts
    # seeded in-neighbours.
    t = np.zeros(n)
    dd = deg.copy()
    chosen = np.zeros(n, dtype=bool)
    picks: list[Any] = []
    for _ in range(min(k, n)):
        masked = np.where(chosen, -np.inf, dd)
        u = int(np.argmax(masked))
        chosen[u] = True
        picks.append(ids[u].as_py())
        for v in out_lists[u]:
            if not chosen[v]:
                t[v] += 1
                dd[v] = deg[v] - 2 * t[v] - (deg[v] - t[v]) * t[v] * p
    return {"degree": top, "degree_discount": picks}
