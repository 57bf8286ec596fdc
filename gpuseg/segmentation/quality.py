"""Agreement of a segmentation with a ground-truth label image."""

from __future__ import annotations

import numpy as np


def quality(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Adjusted Rand index (1 is identical, about 0 is chance) and variation of information (0 is identical,
    in nats) between two label maps of the same shape. Noise (-1) counts as one more region.

    Raises
    ------
    ValueError
        The shapes differ.
    """
    from sklearn.metrics import adjusted_rand_score
    from sklearn.metrics.cluster import contingency_matrix

    labels, truth = np.asarray(labels).ravel(), np.asarray(truth).ravel()
    if labels.shape != truth.shape:
        raise ValueError(f"the truth has {truth.size:,} pixels and the segmentation {labels.size:,}")
    table = contingency_matrix(truth, labels, sparse=True).tocoo()
    n = labels.size
    joint = table.data / n
    p_truth = np.bincount(table.row, weights=table.data) / n
    p_labels = np.bincount(table.col, weights=table.data) / n
    mutual = float(np.sum(joint * np.log(joint / (p_truth[table.row] * p_labels[table.col]))))
    entropy = float(-np.sum(p_truth * np.log(p_truth)) - np.sum(p_labels * np.log(p_labels)))
    return {
        "adjusted_rand_index": float(adjusted_rand_score(truth, labels)),
        "variation_of_information": max(entropy - 2 * mutual, 0.0),
    }
