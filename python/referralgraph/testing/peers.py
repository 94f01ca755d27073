"""Peer libraries set up on the same graph and probabilities as ours, for
tests and benchmarks that compare against them."""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from ..social import SocialGraph

__all__ = ["cynetdiff_model"]


def cynetdiff_model(sg: SocialGraph, model: str, *, seed: int = 1) -> tuple[Any, dict[Any, int]]:
    """A cynetdiff IC (``"ic"``) or LT (``"lt"``) model over ``sg``'s cleaned
    edges and probabilities (CSR over our user indices), and the map from
    user id to its node."""
    from cynetdiff.models import IndependentCascadeModel, LinearThresholdModel

    ids = sg.user_ids().to_pylist()
    index = {v: i for i, v in enumerate(ids)}
    e = sg.edges()
    src = np.array([index[x] for x in e.column("src").to_pylist()], dtype=np.int64)
    dst = np.array([index[x] for x in e.column("dst").to_pylist()], dtype=np.uint32)
    starts = np.searchsorted(src, np.arange(len(ids))).astype(np.uint32)
    p = np.asarray(e.column("p"), dtype=np.float32)
    a, b, w = array("I", starts.tobytes()), array("I", dst.tobytes()), array("f", p.tobytes())
    if model == "ic":
        return IndependentCascadeModel(a, b, activation_probs=w, rng=seed), index
    return LinearThresholdModel(a, b, influence=w, rng=seed), index
