"""The coarse level: enumerated where the memo makes it cheap, else sampled with a budget that
doubles until the answer is settled (``hierarchy.coarse_game``)."""
import json
import sys
from pathlib import Path

import numpy as np

from ShapSegExplainLib.display import resolved_count
from ShapSegExplainLib.shapley import hierarchy
from ShapSegExplainLib.shapley.estimator import exact_shapley

M = 10
SETTINGS = {"threshold": 0.01, "estimator": "gp"}


def conjunctive(c):
    """Three players needed together (a false positive's drivers), the rest minor."""
    c = np.atleast_2d(np.asarray(c, bool))
    return 5.0 * c[:, [0, 1, 2]].all(axis=1) + 0.3 * c[:, 3] + 0.1 * c[:, 4:].sum(axis=1)


def exact_of(game, m: int = M) -> np.ndarray:
    bits = ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1).astype(bool)
    return exact_shapley(game(bits), m)


class Budgets(hierarchy.AtomGames):
    """The real games, with the budget of every play noted."""
    def __init__(self, game, forwards: int, proxy=None, residual=None):
        super().__init__(game, proxy=proxy, residual_budget=residual, enumeration=lambda membership: forwards)
        self.budgets: list[int] = []
        self.residuals: list[int | None] = []

    def play(self, membership, n, budget, seed, stop, kwargs, residual=None):
        self.budgets.append(budget)
        self.residuals.append(residual)
        return super().play(membership, n, budget, seed, stop, kwargs, residual)


def coarse(games, stop=lambda: None):
    return hierarchy.coarse_game(games, np.eye(M, dtype=bool), hierarchy.level_budget(M), 0, stop, SETTINGS)


def test_a_coarse_game_cheap_to_enumerate_is_exact():
    games = Budgets(conjunctive, hierarchy.EXACT_ROOT_FORWARDS)
    res = coarse(games)
    assert res.exact and games.budgets == [2 ** M]
    np.testing.assert_allclose(res.values, exact_of(conjunctive), atol=1e-12)


def test_a_dear_one_is_sampled_and_its_budget_doubles_until_its_top_is_resolved():
    first = hierarchy.AtomGames(conjunctive).play(np.eye(M, dtype=bool), M, hierarchy.level_budget(M), 0,
                                                  lambda: None, SETTINGS)
    assert resolved_count(first.values, first.se) == 0            # 4M coalitions cannot name the three
    games = Budgets(conjunctive, hierarchy.EXACT_ROOT_FORWARDS + 1)
    res = coarse(games)
    assert not res.exact and games.budgets[0] == hierarchy.level_budget(M) and len(games.budgets) > 1
    assert all(b == 2 * a for a, b in zip(games.budgets, games.budgets[1:]))
    named = resolved_count(res.values, res.se)
    assert named >= 1
    order = np.argsort(-np.abs(res.values))[:named]
    assert set(order) <= {0, 1, 2}                                  # what it names are true drivers


def test_the_doubling_ends_in_enumeration_or_when_the_run_must_stop():
    def symmetric(c):                                               # all equal: never resolved
        return np.atleast_2d(np.asarray(c, bool)).all(axis=1) * 1.0
    games = Budgets(symmetric, 10 ** 9)
    res = coarse(games)
    assert games.budgets == [40, 80, 160, 320, 640, 2 ** M] and res.exact
    np.testing.assert_allclose(res.values, 1.0 / M, atol=1e-12)
    games = Budgets(conjunctive, 10 ** 9)
    coarse(games, stop=lambda: "time_limit")
    assert games.budgets == [hierarchy.level_budget(M)]


def test_with_a_proxy_the_exact_residual_coalitions_double_too():
    """The residual (exact coalitions) may be what leaves the top unresolved: it grows with the budget."""
    def proxy(c):                                                   # the drivers seen, the minor players not
        return 5.0 * np.atleast_2d(np.asarray(c, bool))[:, [0, 1, 2]].all(axis=1)
    games = Budgets(conjunctive, 10 ** 9, proxy=proxy, residual=6)
    coarse(games)
    assert len(games.budgets) > 1 and games.residuals[0] is None and games.residuals[1:] == [6 * 2 ** k for k in range(1, len(games.budgets))]


def test_after_a_doubling_the_intervals_hold_the_change_since_the_half_budget():
    """What the decisions use (``change_se=1``): every SE at least its change, and both sums settled."""
    games = Budgets(conjunctive, 10 ** 9)
    res = hierarchy.coarse_game(games, np.eye(M, dtype=bool), hierarchy.level_budget(M), 0, lambda: None, SETTINGS,
                                change_se=1.0)
    half = hierarchy.AtomGames(conjunctive).play(np.eye(M, dtype=bool), M, games.budgets[-2], 0, lambda: None, SETTINGS)
    assert np.all(res.se >= np.abs(res.values - half.values) - 1e-12)
    total = np.abs(res.values).sum()
    assert np.abs(res.values - half.values).sum() <= hierarchy.SUMMED_SE * total
    assert res.se.sum() <= hierarchy.SUMMED_SE * total


ROOT = Path(__file__).resolve().parents[2]


def test_a_gp_sure_of_a_wrong_answer_on_a_real_game_is_not_trusted():
    """A recorded real finding (tuning split): on 24 proxy coalitions the GP fits the conjunctive
    game by its top-order dividend, spreads v(N) over every player and is sure of it (SE 0.002
    on errors of 0.1). Its own SEs would let it stand; the change since the half budget does not."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "heldout"))
    import evaluate
    assert json.loads((ROOT / "benchmarks/heldout/split.json").read_text())["split"]["shift-fp-spleen-2"] == "tuning"
    g = evaluate.Recorded.load(evaluate.GAMES / "shift-fp-spleen-2.npz")
    namable = np.array([n != "context (rest of crop)" for n in g.names])
    games = hierarchy.AtomGames(g.game, g.proxy, None, 6, lambda membership: 10 ** 9)
    first = games.play(np.eye(g.m, dtype=bool), g.m, hierarchy.level_budget(g.m), 1, lambda: None, SETTINGS)
    scale = np.abs(g.shapley).sum()
    assert resolved_count(first.values, first.se, namable) and first.se.sum() <= hierarchy.SUMMED_SE * scale
    assert np.abs(first.values - g.shapley).sum() > 0.2 * scale
    g.reset()
    res = hierarchy.coarse_game(games, np.eye(g.m, dtype=bool), hierarchy.level_budget(g.m), 1, lambda: None,
                                SETTINGS, 0, namable)
    assert np.abs(res.values - g.shapley).sum() <= 0.15 * scale
    assert np.all(np.abs(res.values - g.shapley) <= 1.96 * res.se + 1e-12)


def test_the_reported_intervals_hold_a_share_of_the_change_and_nothing_else_moves():
    """``CHANGE_SE`` narrows what a doubled answer reports; its doubling, values and forwards
    are those of the whole change (the decisions use all of it)."""
    eye, first = np.eye(M, dtype=bool), hierarchy.level_budget(M)
    whole, part = Budgets(conjunctive, 10 ** 9), Budgets(conjunctive, 10 ** 9)
    a = hierarchy.coarse_game(whole, eye, first, 0, lambda: None, SETTINGS, change_se=1.0)
    b = hierarchy.coarse_game(part, eye, first, 0, lambda: None, SETTINGS, change_se=hierarchy.CHANGE_SE)
    assert 0 < hierarchy.CHANGE_SE < 1 and whole.budgets == part.budgets and len(whole.budgets) > 1
    np.testing.assert_array_equal(a.values, b.values)
    play = hierarchy.AtomGames(conjunctive).play
    last, half = (play(eye, M, budget, 0, lambda: None, SETTINGS) for budget in whole.budgets[-1:-3:-1])
    change = np.abs(last.values - half.values)
    np.testing.assert_array_equal(a.se, np.maximum(last.se, change))
    np.testing.assert_array_equal(b.se, np.maximum(last.se, hierarchy.CHANGE_SE * change))
    assert np.all(b.se <= a.se) and np.any(b.se < a.se)
