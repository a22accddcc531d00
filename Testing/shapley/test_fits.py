"""The estimators' table (``shapley.estimator.FITS``): one entry per built-in name, and a new
estimator needs only its fit and an entry. Seconds."""
import numpy as np
import pytest

from fixtures.games import unanimity_game
from ShapSegExplainLib import choices
from ShapSegExplainLib.shapley import estimator
from ShapSegExplainLib.shapley.estimator import FITS, Fit, KernelShapRun, shapley_values


def test_the_table_holds_the_built_in_names():
    assert tuple(FITS) == choices.ESTIMATORS
    assert all(name == fit.name and fit.design in ("gp", "kernelshap", "adaptive") and fit.se_methods
               for name, fit in FITS.items())


def equal_split(run: KernelShapRun, system: dict, fresh: bool) -> dict:
    """A throwaway estimator: v(N) - v(∅) shared equally, no uncertainty."""
    return {"values": np.full(run.m, (run.vn - run.v0) / run.m), "se": np.zeros(run.m), "estimator": "equal"}


@pytest.fixture
def equal_estimator(monkeypatch):
    """``equal`` in the table for one test (monkeypatch restores the table)."""
    monkeypatch.setitem(estimator.FITS, "equal", Fit("equal", "kernelshap", ("none",), equal_split))
    return "equal"


def test_a_new_estimator_is_its_fit_and_one_table_entry(equal_estimator):
    m = 12
    game = unanimity_game(m, max_order=3, seed=2, offset=1.0)
    res = shapley_values(game, m, budget=4 * m, seed=0, estimator=equal_estimator)
    total = game(np.ones((1, m), bool))[0] - game(np.zeros((1, m), bool))[0]
    assert res.estimator == "equal" and not res.exact and res.n_evaluations <= 4 * m
    np.testing.assert_allclose(res.values, total / m, rtol=0, atol=1e-12)
    assert np.all(res.se == 0) and res.run.se_method == "none" and not res.run.gp_design
    assert {h["estimator"] for h in res.history} == {"equal"}


def test_an_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="estimator must be one of"):
        KernelShapRun(lambda c: np.zeros(len(c)), 4, estimator="equal")
