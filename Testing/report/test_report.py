"""The report's display rules at any player count: outlines stay a small share of a view,
uncertain players are neither filled nor outlined, the slices go where the top players are,
the CT window follows the target; a synthetic 3D result with hundreds of players is drawn."""
import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from ShapSegExplainLib.display import (MAX_OUTLINE_SHARE, TOP_MARKED, TOP_OUTLINED, UNCERTAIN_FILL, color_scale,
                                       outlines_in_view, player_styles)
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.report.figure import coarse_players, draw_report
from ShapSegExplainLib.report.inputs import ReportInputs
from ShapSegExplainLib.report.slices import choose_slices, ct_window, view_box, views


def lattice(shape, cell) -> np.ndarray:
    """Player id + 1 on a regular lattice of ``cell``-voxel cubes (squares in 2D)."""
    idx = np.indices(shape) // cell
    n = [int(np.ceil(s / cell)) for s in shape]
    flat = np.ravel_multi_index(tuple(idx), n)
    return (flat + 1).astype(np.int32)


def many_players(n, seed=0, context=True):
    """φ of ``n`` players, a few large, most small; half of the small ones uncertain."""
    rng = np.random.default_rng(seed)
    phi = rng.normal(0, 0.01, n)
    phi[rng.choice(n, 6, replace=False)] = [0.5, -0.4, 0.3, 0.2, -0.15, 0.1]
    se = np.where(rng.random(n) < 0.5, 0.02, 0.001)
    kinds = ["fcc"] * n
    if context:
        kinds[-1] = "context"
        phi[-1] = 2.0          # a context that would squeeze every colour if it set the scale
    return phi, se, kinds


def test_outlines_of_hundreds_of_players_stay_below_their_share_of_the_view():
    ids = lattice((120, 120), 6)                       # 400 players of 6 × 6 pixels
    phi, se, kinds = many_players(400)
    styles = player_styles(phi, se, kinds)
    every_boundary = find_boundaries(ids, mode="inner").mean()
    assert every_boundary > 0.4                         # what drawing every player's outline covered
    kept, mask = outlines_in_view(ids, styles)
    assert 0 < mask.mean() <= MAX_OUTLINE_SHARE
    assert 0 < len(kept) <= TOP_OUTLINED
    assert all(not styles[p].uncertain or styles[p].marked for p in kept)
    assert kinds.index("context") not in kept
    # a tighter share drops the lowest-ranked outlines first, never exceeding it
    kept_tight, tight = outlines_in_view(ids, styles, max_share=0.004)
    assert tight.mean() <= 0.004 and kept_tight == kept[:len(kept_tight)] and len(kept_tight) < len(kept)


def test_uncertain_players_are_not_drawn_except_the_numbered_ones():
    phi, se, kinds = many_players(300, seed=1)
    styles = player_styles(phi, se, kinds)
    unsure = np.abs(phi) <= 1.96 * se
    for i, s in enumerate(styles):
        assert s.uncertain == unsure[i]
        if kinds[i] == "context":
            assert s.fill == 0 and not s.outlined and not s.marked
        elif s.uncertain and not s.marked:
            assert s.fill == 0 and not s.outlined
        else:
            assert s.fill > 0
    assert sum(s.marked for s in styles) == TOP_MARKED
    assert sum(s.outlined for s in styles) <= TOP_OUTLINED
    # the colour scale ignores the (undrawn) context
    assert color_scale(phi, [k != "context" for k in kinds]) == pytest.approx(0.5)
    shown = player_styles(phi, se, kinds, show_uncertain=True)
    assert all(s.fill == UNCERTAIN_FILL for s in shown if s.uncertain and not s.marked)


def test_an_exact_result_draws_every_nonzero_player():
    styles = player_styles([0.3, -0.1, 0.0, 0.02], [0, 0, 0, 0])
    assert [s.uncertain for s in styles] == [False, False, True, False]
    assert styles[2].fill == (0.0 if not styles[2].marked else styles[2].fill)


def test_the_ct_window_follows_the_target():
    assert ct_window("vertebrae_L1")[0] == "bone" and ct_window("rib_left_3")[0] == "bone"
    assert ct_window("lung_upper_lobe_left")[0] == "lung" and ct_window("trachea")[0] == "lung"
    assert ct_window("kidney_left") == ("soft tissue", 40.0, 400.0)
    assert ct_window("kidney_left", "bone")[0] == "bone"
    with pytest.raises(ShapSegError, match="unknown CT window"):
        ct_window("liver", "brain")


def test_slices_go_through_the_roi_and_the_top_players_not_only_the_roi_centre():
    ids = np.zeros((30, 40, 40), np.int32)
    roi = np.zeros(ids.shape, bool)
    roi[4:9, 15:25, 15:25] = True                     # ROI centre z = 6
    ids[7:10, 10:30, 10:30] = 1                       # the top player overlaps the ROI at z = 7, 8
    ids[20:25, 10:30, 10:30] = 2                      # a weak player far away
    styles = player_styles([1.0, 0.01])
    box = view_box(ids, roi, np.array([3.0, 1.5, 1.5]), None)
    z, y, x = choose_slices(ids, roi, box, styles)
    assert z in (7, 8) and 15 <= y < 25 and 15 <= x < 25


def test_coarse_players_sum_their_pieces():
    rows = [{"phi": 0.2, "se": 0.03, "kind": "hybrid", "coarse": "liver"},
            {"phi": -0.05, "se": 0.04, "kind": "hybrid", "coarse": "liver"},
            {"phi": 0.1, "se": 0.0, "kind": "organ", "coarse": "spleen"},
            {"phi": 0.7, "se": 0.1, "kind": "context", "coarse": "context (rest of crop)"}]
    c = coarse_players(rows)
    assert c["names"] == ["liver", "spleen", "context (rest of crop)"]
    assert c["index"].tolist() == [0, 0, 1, 2]
    assert np.allclose(c["phi"], [0.15, 0.1, 0.7]) and np.allclose(c["se"], [0.05, 0.0, 0.1])
    assert c["kinds"] == ["organ", "organ", "context"]
    assert coarse_players([{"phi": 1.0, "se": 0.0, "kind": "organ"}]) is None


def synthetic_result(n_side=8, cell=4):
    """A 3D result with n_side³ lattice players over a synthetic CT, as the report reads it."""
    shape = (n_side * cell,) * 3
    ids = lattice(shape, cell)
    n = int(ids.max())
    phi, se, kinds = many_players(n, seed=2, context=False)
    roi = np.zeros(shape, bool)
    roi[12:20, 12:20, 12:20] = True
    rows = [{"id": i, "name": f"cell {i}", "kind": kinds[i], "phi": float(phi[i]), "se": float(se[i]), "ml": 0.2}
            for i in range(n)]
    expl = {"players": rows, "value": {"name": "soft_dice", "normalized": False, "unit": ""},
            "target": {"name": "kidney_left"}, "roi": {"ml": 1.0}, "full_value": 0.9, "base_value": 0.0,
            "shapley": {"exact": False, "convergence_ratio": 0.05, "n_evaluations": 900, "stop_reason": "budget",
                        "history": []},
            "convergence": [{"coalitions": c, "tile_forwards": 3 * c, "ratio": 1.0 / c} for c in (100, 300, 900)],
            "stats": {"tile_forwards": 2700, "tile_forwards_roi": 5400}, "players_summary": {"players": n},
            "settings": {"players": "fcc", "threshold": 0.01}, "faithfulness": None}
    hu = np.random.default_rng(0).normal(40, 30, shape).astype(np.float32)
    return ReportInputs(expl=expl, hu=hu, ids=ids, roi=roi, spacing=np.array([1.5, 1.5, 1.5]))


def test_a_result_with_hundreds_of_players_draws_with_outlines_under_the_cap():
    inputs = synthetic_result()
    rows = inputs.rows
    assert len(rows) == 512
    styles = player_styles([r["phi"] for r in rows], [r["se"] for r in rows], [r["kind"] for r in rows])
    box = view_box(inputs.ids, inputs.roi, inputs.spacing, None)
    at = choose_slices(inputs.ids, inputs.roi, box, styles)
    for view in views(inputs.ids, inputs.roi, inputs.hu, inputs.spacing, box, at):
        kept, mask = outlines_in_view(view.ids, styles)
        assert mask.mean() <= MAX_OUTLINE_SHARE
        drawn = {int(p) - 1 for p in np.unique(view.ids) if p and styles[int(p) - 1].fill > 0}
        assert all(not styles[p].uncertain or styles[p].marked for p in drawn)
    fig = draw_report(inputs)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("axial") for t in titles) and any("convergence" in t for t in titles)
    assert any("500 more players" in t for t in titles)            # 12 bars, the rest summed
    assert "CT window: soft tissue" in fig._suptitle.get_text()
