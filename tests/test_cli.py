"""The demo runs end to end and prints every section."""

from __future__ import annotations

import pytest
from referralgraph.cli import main


def test_demo_prints_attribution_reach_scores_channels_and_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--users", "20000", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    for section in ("attribution:", "reach (K=3):", "scores:", "core fan", "channels", "K-factor"):
        assert section in out
    assert "graph:             20,000 users" in out
