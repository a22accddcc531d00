"""Coarse-to-fine values: children sum to their parent, the proportional (Owen) and equal splits, additive games."""
import numpy as np
import pytest

from fixtures.games import unanimity_game
from fixtures.owen import owen_values, subsets
from ShapSegExplainLib.players.levels import Tree
from ShapSegExplainLib.shapley.estimator import exact_shapley
from ShapSegExplainLib.shapley.hierarchy import MAX_SCALE, level_budget, node_game, split_value, tree_shapley


def two_level_tree() -> Tree:
    """Atoms 0..7: roots {0,1,2}, {3,4,5,6}, {7}; the second root splits into {3,4}, {5}, {6},
    and {3,4} again into {3}, {4}."""
    atoms = [[0, 1, 2], [3, 4, 5, 6], [7], [0], [1], [2], [3, 4], [5], [6], [3], [4]]
    parent = [-1, -1, -1, 0, 0, 0, 1, 1, 1, 6, 6]
    return Tree([np.array(a) for a in atoms], np.array(parent))


def brute_shapley(game, n: int) -> np.ndarray:
    return exact_shapley(np.asarray(game(subsets(n)), float), n)


@pytest.mark.parametrize("split", ["proportional", "equal"])
def test_children_sum_to_the_parent_and_follow_the_split_rule(split):
    tree = two_level_tree()
    game = unanimity_game(8, max_order=3, seed=4)
    res = tree_shapley(game, tree, max_refinements=10, min_share=0.0, split=split)
    assert set(res.nodes) == {2, 3, 4, 5, 7, 8, 9, 10}
    coarse = brute_shapley(node_game(game, tree.membership(tree.roots())), 3)
    value = dict(zip(res.nodes, res.values))
    assert value[2] == pytest.approx(coarse[2], abs=1e-12)                     # never refined: keeps its value
    assert value[3] + value[4] + value[5] == pytest.approx(coarse[0], abs=1e-12)
    parent1 = value[7] + value[8] + value[9] + value[10]
    assert parent1 == pytest.approx(coarse[1], abs=1e-12)
    assert res.values.sum() == pytest.approx(res.full_value - res.base_value, abs=1e-12)
    # the rule by hand for root 1's children {3,4}, {5}, {6} (node 6 = {3,4} refined later)
    kids = [6, 7, 8]
    sh = brute_shapley(node_game(game, tree.membership(kids)), 3)
    full, without = game(np.ones((1, 8), bool))[0], game(np.array([[1, 1, 1, 0, 0, 0, 0, 1]], bool))[0]
    marginal = full - without
    proportional = split == "proportional" and coarse[1] * marginal > 0 and abs(coarse[1]) <= MAX_SCALE * abs(marginal)
    expect = sh * coarse[1] / marginal if proportional else sh + (coarse[1] - marginal) / 3
    assert value[7] == pytest.approx(expect[1], abs=1e-12) and value[8] == pytest.approx(expect[2], abs=1e-12)
    assert value[9] + value[10] == pytest.approx(expect[0], abs=1e-12)
    assert (res.se == 0).all() and len(res.refined) == 3
    assert res.scales[res.refined.index(1)] == (pytest.approx(coarse[1] / marginal) if proportional else None)


def test_the_proportional_split_is_the_owen_value_when_a_player_scales_with_its_context():
    """v = a(R) + b(R)·h(T), R the atoms outside root 1, T those inside: the children of root 1
    get the Owen value of the structure {root 0}, {root 1's children}, {root 2} exactly; the
    equal split does not."""
    tree = two_level_tree()
    inside = np.array([3, 4, 5, 6])
    outside = np.array([0, 1, 2, 7])
    a, b, h = (unanimity_game(4, max_order=3, seed=s) for s in (5, 6, 7))

    def game(c):
        c = np.atleast_2d(np.asarray(c, bool))
        hv = h(c[:, inside]) - h(np.zeros((1, 4), bool))[0]
        return a(c[:, outside]) + (2.0 + np.abs(b(c[:, outside]))) * 3.0 * hv
    kids = tree.children(1)
    players = [0, *kids, 2]                                   # root 0, root 1's children, root 2
    owen = owen_values(node_game(game, tree.membership(players)), [[0], [1, 2, 3], [4]], 5)[1:4]
    for split, exact in (("proportional", True), ("equal", False)):
        res = tree_shapley(game, tree, max_refinements=1, min_share=0.0, split=split)
        assert res.refined == [1]
        got = np.array([res.values[res.nodes.index(k)] for k in kids])
        assert np.allclose(got, owen, atol=1e-10) == exact, (split, got, owen)


def test_the_proportional_split_falls_back_to_the_equal_split_where_the_image_says_little():
    """φ_p of another sign than m_p, or more than MAX_SCALE times it: the equal split, and no
    scale; otherwise the children's values and errors scale by φ_p / m_p."""
    from types import SimpleNamespace
    inner = SimpleNamespace(values=np.array([0.3, 0.1, -0.2]), se=np.array([0.01, 0.02, 0.03]),
                            full_value=1.0, base_value=0.8)                      # m_p = 0.2
    values, se, scale = split_value(0.4, 0.05, inner, "proportional")
    assert scale == pytest.approx(2.0)
    np.testing.assert_allclose(values, [0.6, 0.2, -0.4])
    np.testing.assert_allclose(se, np.sqrt((2 * inner.se) ** 2 + (inner.values / 0.2 * 0.05) ** 2))
    for phi in (-0.4, 0.2 * MAX_SCALE * 1.01):
        values, se, scale = split_value(phi, 0.05, inner, "proportional")
        assert scale is None
        np.testing.assert_allclose(values, inner.values + (phi - 0.2) / 3)
        np.testing.assert_allclose(se, np.sqrt(inner.se ** 2 + (0.05 / 3) ** 2))
    assert split_value(0.4, 0.05, inner, "equal")[2] is None


def test_a_player_whose_value_needs_others_absent_is_left_whole_without_playing_its_game():
    """Roots 0 and 1 stand in for each other (either one whole gives 1) plus a small additive
    part: with everything present, removing either changes little, m_p ≪ φ_p. The proportional
    split leaves both whole, read from the coarse game's own v(N ∖ p), and no coalition ever
    cuts a root; the equal split refines them."""
    tree = two_level_tree()
    small = np.array([0.01, 0.02, 0.0, 0.03, 0.01, 0.02, 0.01, 0.5])
    seen = []

    def game(c):
        c = np.atleast_2d(np.asarray(c, bool))
        seen.append(c)
        return (c[:, :3].all(axis=1) | c[:, 3:7].all(axis=1)).astype(float) + c @ small
    res = tree_shapley(game, tree, min_share=0.0)
    assert res.refined == [] and res.stop_reason == "left_whole" and res.nodes == tree.roots()
    assert res.left_whole == {0: pytest.approx(small[:3].sum()), 1: pytest.approx(small[3:7].sum())}
    assert res.values[:2] == pytest.approx(0.5 + np.array([small[:3].sum(), small[3:7].sum()]))
    played = np.concatenate(seen)
    for root in tree.roots():                                   # every coalition has each root whole or absent
        inside = played[:, tree.node_atoms[root]]
        assert (inside.all(axis=1) | ~inside.any(axis=1)).all()
    equal = tree_shapley(game, tree, min_share=0.0, split="equal")
    assert {0, 1} <= set(equal.refined) and equal.left_whole == {}


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
