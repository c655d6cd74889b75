"""The buggy/fixed corpus (tests/diagnosis/training_corpus.py), audited with inputs only and with targets.

The counts are those reported in the issue's note: change them only with the reason in the commit.
"""

from __future__ import annotations

from tests.diagnosis.training_corpus import PAIRS, audit_corpus, counts


def test_corpus_counts_per_mode() -> None:
    outcomes = audit_corpus()
    assert len(PAIRS) >= 20
    assert counts(outcomes) == {
        "pairs": 22,
        "buggy_diagnosed_inputs_only": 15,
        "buggy_diagnosed_with_targets": 22,
        "fixed_flagged_inputs_only": 0,
        "fixed_flagged_with_targets": 0,
    }
    # What only the targets reveal: bugs in the optimizer settings and in the labels, and whether a bounded
    # output under a regression loss can reach its targets (without them, bounded-output-regression is a hint).
    only_with_targets = sorted(o.pair for o in outcomes if o.buggy_targets and not o.buggy_inputs)
    assert only_with_targets == [
        "adam-lr-1",
        "learning-rate-too-high",
        "learning-rate-too-low",
        "relu-on-signed-targets",
        "sigmoid-on-prices",
        "signed-labels-on-sigmoid",
        "unscaled-targets-sgd",
    ]
