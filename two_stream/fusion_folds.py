"""Cross-validation folds of whole groups, for the learned fusion rows (`two_stream.fusion`)
and the structured stacking model's inner CV (`two_stream.stacking`): one module both import,
so neither imports the other."""
from __future__ import annotations

import numpy as np


def group_folds(labels: np.ndarray, groups: list[str], num_folds: int, seed: int = 0
                ) -> np.ndarray:
    """int [N] fold of each video, whole groups per fold, classes spread evenly, seeded.

    Clips of one UCF101 group (or HMDB51 film) are near-duplicates; splitting them across
    folds would let a fitted rule recognise the group instead of the action and inflate the
    out-of-fold accuracy.
    """
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = sorted(members)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(members[g]))  # big groups first, ties in shuffled order
    num_classes = int(labels.max()) + 1
    count = np.zeros((num_folds, num_classes), dtype=np.int64)
    fold = np.empty(len(labels), dtype=np.int64)
    for g in names:
        idx = np.array(members[g])
        c = np.bincount(labels[idx], minlength=num_classes)
        main = int(c.argmax())
        f = int(np.lexsort((count.sum(axis=1), count[:, main]))[0])
        fold[idx] = f
        count[f] += c
    return fold
