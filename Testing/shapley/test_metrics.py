"""Faithfulness metrics on games where the curves are known by hand."""
import numpy as np
import pytest

from fixtures.games import unanimity_game
from ShapSegExplainLib.shapley.metrics import anatomical_alignment, faithfulness, removal_points
from ShapSegExplainLib.shapley.estimator import shapley_values


def additive(a):
    a = np.asarray(a, float)
    return lambda c: np.asarray(c, float) @ a


def test_curves_of_an_additive_game_are_known():
    a = np.array([5.0, -1.0, 3.0, 0.5, -2.0])
    out = faithfulness(additive(a), a, steps=5)
    order = np.argsort(-a)
    morf = [a.sum() - a[order[:k]].sum() for k in range(6)]
    lerf = [a.sum() - a[order[::-1][:k]].sum() for k in range(6)]
    ins = [a[order[:k]].sum() for k in range(6)]
    np.testing.assert_allclose(out["morf"], morf)
    np.testing.assert_allclose(out["lerf"], lerf)
    np.testing.assert_allclose(out["insertion"], ins)
    assert out["aopc"] == pytest.approx(np.mean(morf[0] - np.array(morf)))
    assert out["abpc"] == pytest.approx(np.mean(np.array(lerf) - np.array(morf)))
    assert out["deletion_auc"] == pytest.approx(np.trapezoid(morf, np.arange(6) / 5))
    assert out["coalitions"] == 18


def test_shapley_order_beats_a_random_order():
    game = unanimity_game(20, max_order=2, seed=3)
    phi = shapley_values(game, 20, budget=200).values
    good = faithfulness(game, phi, steps=10)
    rng = np.random.default_rng(0)
    rand = [faithfulness(game, rng.normal(size=20), steps=10) for _ in range(10)]
    assert good["aopc"] > np.mean([r["aopc"] for r in rand])
    assert good["abpc"] > 0 and good["abpc"] > np.mean([r["abpc"] for r in rand])
    assert good["insertion_auc"] > good["deletion_auc"]


def test_steps_and_alignment():
    assert list(removal_points(100, 4)) == [0, 25, 50, 75, 100]
    assert list(removal_points(3, 10)) == [0, 1, 2, 3]
    phi = np.array([1.0, -3.0, 2.0, 4.0])
    purity = np.array([1.0, 0.5, 1.0, np.nan])                # last one: the context player
    assert anatomical_alignment(phi, purity) == pytest.approx(3.0 / 6.0)


def test_curves_over_removed_volume_keep_the_context_and_compare_partitions():
    """Points evenly spaced in removed mL; a player enters when it fits; the context stays."""
    a = np.array([4.0, 1.0, -1.0, 9.0])                       # player 3: the context
    vol = np.array([2.0, 1.0, 1.0, 50.0])
    out = faithfulness(additive(a), a, steps=4, volumes=vol, kept=np.array([False, False, False, True]))
    np.testing.assert_allclose(out["ml_removed"], [0.0, 1.0, 2.0, 3.0, 4.0])
    # MoRF order 0 (2 mL), 1, 2: removed sets at 0..4 mL: {}, {}, {0}, {0,1}, {0,1,2}
    np.testing.assert_allclose(out["morf"], [13.0, 13.0, 9.0, 8.0, 9.0])
    # LeRF order 2, 1, 0: {}, {2}, {2,1}, {2,1}, all
    np.testing.assert_allclose(out["lerf"], [13.0, 14.0, 13.0, 13.0, 9.0])
    np.testing.assert_allclose(out["insertion"], [9.0, 9.0, 13.0, 14.0, 13.0])
    assert out["fraction_removed"] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_ranking_by_phi_per_ml_follows_the_finer_cut_of_equal_densities():
    """Two 1 mL players of φ 1 merged into one 2 mL player of φ 2: ranked by φ per mL the merged
    cut follows the fine cut's curve wherever its blocks allow; ranked by φ the merged player
    jumps ahead of a denser 1 mL player of φ 1.5."""
    fine, fine_ml = np.array([1.0, 1.0, 1.5, 0.2]), np.array([1.0, 1.0, 1.0, 1.0])
    merged, merged_ml = np.array([2.0, 1.5, 0.2]), np.array([2.0, 1.0, 1.0])
    merge = lambda c: np.column_stack([c[:, 0], c[:, 0], c[:, 1], c[:, 2]])      # noqa: E731
    game_fine = additive(fine)
    game_merged = lambda c: game_fine(merge(np.asarray(c, bool)))                 # noqa: E731
    a = faithfulness(game_fine, fine, steps=4, volumes=fine_ml, order="density")
    b = faithfulness(game_merged, merged, steps=4, volumes=merged_ml, order="density")
    # at 1 mL the fine cut removes the 1.5 player; the merged one cannot split its 2 mL
    np.testing.assert_allclose(a["morf"], [3.7, 2.2, 1.2, 0.2, 0.0])
    np.testing.assert_allclose(b["morf"], [3.7, 2.2, 2.2, 0.2, 0.0])
    by_phi = faithfulness(game_merged, merged, steps=4, volumes=merged_ml, order="phi")
    np.testing.assert_allclose(by_phi["morf"], [3.7, 3.7, 1.7, 0.2, 0.0])         # the 2 mL block first
    assert b["aopc"] > by_phi["aopc"] and b["order"] == "density"
    with pytest.raises(ValueError):
        faithfulness(game_fine, fine, steps=4, order="density")
