"""The reflection mode's intensities of a non-isomorphous crystal: structure factors of only
the reflections it needs, the same values as the whole unique set's lookup."""
from __future__ import annotations

import gemmi
import numpy as np

from processing.geometry.prediction import generate_indices
from processing.simulate.reflections import perturbed_intensities
from processing.simulate.truth import random_structure, true_intensities


def test_perturbed_intensities_equal_the_full_lookup():
    sg = gemmi.SpaceGroup("I 21 3")
    cell = (78.1, 78.1, 78.1, 90.0, 90.0, 90.0)
    st = random_structure(sg, cell, 60, np.random.default_rng(1), 15.0).perturbed(np.random.default_rng(5), 0.35, 1.02)
    h = generate_indices(cell, 3.0, sg)
    h = np.concatenate([h[np.random.default_rng(0).choice(len(h), 800, replace=False)],
                        [[1, 0, 0], [90, 0, 0]]])  # an absence and one beyond d_min
    full = true_intensities(st, 3.0).lookup(h)
    mine = perturbed_intensities(st, 3.0, h)
    np.testing.assert_array_equal(mine, full)
    assert mine[-2] == mine[-1] == 0.0 and np.count_nonzero(mine) == 800
