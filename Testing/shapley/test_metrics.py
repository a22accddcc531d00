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
