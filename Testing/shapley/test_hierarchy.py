"""Coarse-to-fine values: children sum to their parent, the two-step rule, additive games."""
import numpy as np
import pytest

from fixtures.games import unanimity_game
from ShapSegExplainLib.players.levels import Tree
from ShapSegExplainLib.shapley.estimator import exact_shapley
from ShapSegExplainLib.shapley.hierarchy import level_budget, node_game, tree_shapley


def two_level_tree() -> Tree:
    """Atoms 0..7: roots {0,1,2}, {3,4,5,6}, {7}; the second root splits into {3,4}, {5}, {6},
    and {3,4} again into {3}, {4}."""
    atoms = [[0, 1, 2], [3, 4, 5, 6], [7], [0], [1], [2], [3, 4], [5], [6], [3], [4]]
    parent = [-1, -1, -1, 0, 0, 0, 1, 1, 1, 6, 6]
    return Tree([np.array(a) for a in atoms], np.array(parent))


def brute_shapley(game, n: int) -> np.ndarray:
    masks = np.arange(1 << n)
    coal = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)
    return exact_shapley(np.asarray(game(coal), float), n)


def test_children_sum_to_the_parent_and_follow_the_two_step_rule():
    tree = two_level_tree()
    game = unanimity_game(8, max_order=3, seed=4)
    res = tree_shapley(game, tree, max_refinements=10, min_share=0.0)
    assert set(res.nodes) == {2, 3, 4, 5, 7, 8, 9, 10}
    coarse = brute_shapley(node_game(game, tree.membership(tree.roots())), 3)
    value = dict(zip(res.nodes, res.values))
    assert value[2] == pytest.approx(coarse[2], abs=1e-12)                     # never refined: keeps its value
    assert value[3] + value[4] + value[5] == pytest.approx(coarse[0], abs=1e-12)
    parent1 = value[7] + value[8] + value[9] + value[10]
    assert parent1 == pytest.approx(coarse[1], abs=1e-12)
    assert res.values.sum() == pytest.approx(res.full_value - res.base_value, abs=1e-12)
    # the two-step rule by hand for root 1's children {3,4}, {5}, {6} (node 6 = {3,4} refined later)
    kids = [6, 7, 8]
    w = node_game(game, tree.membership(kids))
    sh = brute_shapley(w, 3)
    full, without = game(np.ones((1, 8), bool))[0], game(np.array([[1, 1, 1, 0, 0, 0, 0, 1]], bool))[0]
    expect = sh + (coarse[1] - (full - without)) / 3
    assert value[7] == pytest.approx(expect[1], abs=1e-12) and value[8] == pytest.approx(expect[2], abs=1e-12)
    assert value[9] + value[10] == pytest.approx(expect[0], abs=1e-12)
    assert (res.se == 0).all() and len(res.refined) == 3


def test_on_an_additive_game_every_level_is_the_flat_shapley_value():
    a = np.array([3.0, -1.0, 0.5, 2.0, 4.0, -2.5, 1.0, 0.25])
    game = lambda c: np.asarray(c, float) @ a                                    # noqa: E731
    tree = two_level_tree()
    seen = []
    tree_shapley(game, tree, max_refinements=10, min_share=0.0,
                 on_level=lambda r: seen.append((list(r.nodes), r.values.copy())))
    assert len(seen) == 4                                                        # coarse + three refinements
    for nodes, values in seen:
        np.testing.assert_allclose(values, [a[tree.node_atoms[n]].sum() for n in nodes], atol=1e-12)


def test_refinement_follows_the_largest_value_and_stops_on_small_shares_or_a_stop_rule():
    a = np.array([0.01, 0.01, 0.01, 5.0, 0.02, 0.01, 0.01, 0.0])
    game = lambda c: np.asarray(c, float) @ a                                    # noqa: E731
    tree = two_level_tree()
    res = tree_shapley(game, tree, min_share=0.2)
    assert res.refined == [1, 6] and res.stop_reason == "small"                 # 5.0 sits in {3}: root 1, then {3,4}
    done = []

    def counted(c):
        done.append(len(c))
        return game(c)
    res = tree_shapley(counted, tree, min_share=0.0, stop=lambda: "forwards" if sum(done) >= 8 else None)
    assert res.stop_reason == "forwards" and res.nodes == tree.roots() and sum(done) == 8
    assert res.values.sum() == pytest.approx(a.sum())
    assert level_budget(4) == 16 and level_budget(12) == 48 and level_budget(12, per_player=1) == 26


def test_with_volumes_the_largest_phi_times_volume_is_refined_first_among_players_above_the_share():
    tree = two_level_tree()
    atom_ml = np.array([40.0, 30.0, 30.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    volumes = np.array([atom_ml[a].sum() for a in tree.node_atoms])            # root 0: 100 mL, root 1: 4 mL
    a = np.array([0.3, 0.3, 0.3, 1.0, 0.5, 0.3, 0.2, 0.0])                     # root 0: φ 0.9, root 1: φ 2.0
    game = lambda c: np.asarray(c, float) @ a                                    # noqa: E731
    assert tree_shapley(game, tree, min_share=0.2).refined == [1, 6, 0]          # by |φ|
    assert tree_shapley(game, tree, min_share=0.2, volumes=volumes).refined == [0, 1, 6]   # 90 > 8
    a[:3] = 0.05                                                                 # root 0 now below 20 % of Σ|φ|
    res = tree_shapley(game, tree, min_share=0.2, volumes=volumes)
    assert res.refined == [1, 6] and res.stop_reason == "small"                 # its volume does not bring it back
