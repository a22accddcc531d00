"""What the panel shows: the table, "top k / hide |φ| below t", segment colours and opacity
(the same as in players.seg.nrrd), the legend, and the faithfulness and status lines."""
import numpy as np
import pytest
import SimpleITK as sitk

from ShapSegExplainLib.colors import phi_colors, phi_opacity
from ShapSegExplainLib.display import FILL, TOP_OUTLINED, UNCERTAIN_FILL, player_styles
from ShapSegExplainLib.run.outputs import write_players_seg
from ShapSegExplainLib.panel.result_view import (TABLE_COLUMNS, player_display, faithfulness_text, format_duration, legend_labels,
                                           legend_stops, legend_stylesheet, segment_id, segment_styles,
                                           status_text, summary_text, table_rows, visible_players)
from ShapSegExplainLib.panel.worker_events import RunState

PHI = [0.42, -0.9, 0.05, 0.0, -0.05, 0.3]


def players(phi=PHI):
    return [{"id": i, "name": f"player {i}", "kind": "hybrid", "organ": "liver" if i % 2 else None,
             "phi": p, "se": 0.01 * (i + 1), "ml": 1.5 + i, "rank": r, "centroid_ras": [i, -i, 2.0 * i]}
            for i, (p, r) in enumerate(zip(phi, np.argsort(np.argsort(-np.array(phi))) + 1))]


def test_table_rows_largest_phi_first_with_what_a_row_jumps_to():
    rows = table_rows(players())
    assert [r["phi"] for r in rows] == sorted(PHI, reverse=True)
    assert [r["Rank"] for r in rows] == list(range(1, len(PHI) + 1))
    assert set(TABLE_COLUMNS) <= set(rows[0])
    top = rows[0]
    assert top["Player"] == "player 0" and top["segment_id"] == "player_0" and top["centroid_ras"] == [0, 0, 0.0]
    assert rows[-1]["Organ"] == "liver" and rows[-1]["+/-SE"] == pytest.approx(0.02)


def test_segment_ids_are_those_of_players_seg_nrrd(tmp_path):
    import slicerio
    ct = sitk.Image(8, 8, 4, sitk.sitkInt16)
    ids = np.zeros((4, 8, 8), np.int32)
    for i in range(len(PHI)):
        ids[:, i, :] = i + 1
    write_players_seg(tmp_path / "p.seg.nrrd", ct, ids, players())
    seg = slicerio.read_segmentation(str(tmp_path / "p.seg.nrrd"))
    by_id = {s["id"]: s for s in seg["segments"]}
    for p, (rgb, _) in zip(players(), segment_styles(PHI)):
        s = by_id[segment_id(p["id"])]
        assert s["labelValue"] == p["id"] + 1
        assert np.allclose(s["color"], rgb, atol=1e-5)        # the live overlay uses the file's colours


@pytest.mark.parametrize("top_k, min_abs, shown", [
    (0, 0.0, [0, 1, 2, 3, 4, 5]),
    (2, 0.0, [0, 1]),
    (3, 0.0, [0, 1, 5]),
    (0, 0.1, [0, 1, 5]),
    (2, 0.5, [1]),
    (100, 0.0, [0, 1, 2, 3, 4, 5]),
])
def test_top_k_and_threshold(top_k, min_abs, shown):
    assert np.flatnonzero(visible_players(PHI, top_k, min_abs)).tolist() == shown


def test_styles_red_up_blue_down_opacity_by_magnitude():
    styles = segment_styles(PHI)
    colours, opacity = np.array([s[0] for s in styles]), np.array([s[1] for s in styles])
    expected = phi_opacity(np.array(PHI), None, *FILL)
    expected[3] = 0.0                                   # φ = 0 exactly: its interval contains 0, not drawn
    assert np.allclose(colours, phi_colors(np.array(PHI))) and np.allclose(opacity, expected)
    assert colours[0][0] > colours[0][2] and colours[1][2] > colours[1][0]      # + red, - blue
    assert opacity[1] == max(opacity) and opacity[3] == min(opacity)
    assert opacity[2] == pytest.approx(opacity[4])                            # symmetric in |φ|


def test_the_panel_hides_what_the_report_does_not_draw():
    """One definition: the panel's styles are the report's (``display.player_styles``);
    uncertain players and the context are hidden unless "show uncertain players"."""
    from ShapSegExplainLib.panel.result_view import legend_scale, player_display
    ps = players([0.42, -0.9, 0.05, 0.01, -0.05, 0.3, 0.6])
    ps[-1]["kind"] = "context"
    ps[3]["se"] = 0.02                                  # 0.01 ± 0.039: uncertain
    styles = player_display(ps)
    assert styles == player_styles([p["phi"] for p in ps], [p["se"] for p in ps], [p["kind"] for p in ps])
    shown = visible_players([p["phi"] for p in ps], 0, 0.0, styles)
    assert shown.tolist() == [True, True, False, False, False, True, False]     # 2, 3, 4: interval contains 0
    assert sum(s.outlined for s in styles) <= TOP_OUTLINED and not styles[-1].outlined
    faint = player_display(ps, show_uncertain=True)
    assert visible_players([p["phi"] for p in ps], 0, 0.0, faint).tolist()[3] and faint[3].fill == UNCERTAIN_FILL
    assert legend_scale(ps) == 0.9                      # the context (0.6 here, often the largest) is not drawn
    live = player_display(ps, phi=[0.0] * 7, se=[0.1] * 7)        # a live run's first batch: all uncertain
    assert not any(s.marked for s in live) and all(s.fill == 0 for s in live)    # nothing numbered, nothing drawn


def test_legend_matches_the_segment_colours():
    vmax = 0.9
    stops = legend_stops(vmax)
    assert stops[0][0] == 0.0 and stops[-1][0] == 1.0 and len(stops) == 9
    hexes = ["#%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgb) for rgb in phi_colors(np.array([-vmax, vmax]))]
    assert (stops[0][1], stops[-1][1]) == tuple(hexes)
    css = legend_stylesheet(vmax)
    assert css.count("stop:") == 9 and "qlineargradient" in css
    assert legend_labels(vmax, "mL") == ("-0.9 mL (lowers)", "0", "+0.9 mL (raises)")


def test_faithfulness_and_summary_lines():
    faith = {"aopc": 0.4321, "abpc": 0.25, "deletion_auc": 0.1, "insertion_auc": 0.8, "anatomical_alignment": 0.875}
    text = faithfulness_text(faith)
    assert "AOPC 0.432" in text and "ABPC 0.25" in text and "anatomical alignment 88%" in text
    assert faithfulness_text(None) == ""
    expl = {"value": {"name": "soft_fp", "normalized": False, "unit": "mL"}, "target": {"name": "kidney_left"},
            "full_value": 3.5, "base_value": 0.0, "players": players(),
            "shapley": {"exact": False, "convergence_ratio": 0.083, "n_evaluations": 140},
            "stats": {"tile_forwards": 1232, "seconds": 88.2}}
    s = summary_text(expl)
    assert s.startswith("soft_fp of kidney_left") and "6 players" in s and "140 coalitions" in s and "88 s" in s


def test_status_lines_of_a_run():
    st = RunState()
    st.update({"event": "progress", "phase": "shapley", "done": 0, "total": 100, "message": "0 coalitions"}, now=0.0)
    st.update({"event": "progress", "phase": "shapley", "done": 25, "total": 100, "message": "25 coalitions",
               "ratio": 0.2}, now=10.0)
    text = status_text(st)
    assert "25/100" in text and "ratio 0.200" in text and "30 s left" in text
    st.update({"event": "error", "message": "the CT could not be read", "code": "bad_input"})
    assert status_text(st) == "Failed: the CT could not be read"
    assert status_text(RunState(outcome="cancelled")).startswith("Cancelled")
    assert format_duration(75) == "1 min 15 s" and format_duration(3700) == "1 h 01 min" and format_duration(None) == "…"


def test_live_overlay_styles_are_keyed_by_the_preview_label():
    """The preview map labels player id + 1; its styles are the result's segment styles."""
    from ShapSegExplainLib.panel.result_view import segment_styles, styles_by_label
    players = [{"id": 2}, {"id": 0}, {"id": 1}]
    phi = [0.5, -0.2, 0.0]
    styles = styles_by_label(players, phi)
    assert sorted(styles) == [1, 2, 3]
    assert [styles[p["id"] + 1] for p in players] == segment_styles(phi)



def test_a_result_stopped_inside_its_first_design_reads_without_raising():
    """``se`` and the ratio are null there: the table shows NaN, every such player counts as
    uncertain (not filled, never numbered as resolved), the summary says where it stopped."""
    rows = players()
    for r in rows:
        r["se"] = None
    table = table_rows(rows)
    assert all(np.isnan(r["+/-SE"]) for r in table) and table[0]["phi"] == max(PHI)
    assert all(s.uncertain for s in player_display(rows))
    expl = {"value": {"name": "soft_fp", "normalized": False, "unit": "mL"}, "target": {"name": "kidney_left"},
            "full_value": 3.5, "base_value": 0.0, "players": rows,
            "shapley": {"exact": False, "convergence_ratio": None, "n_evaluations": 2},
            "stats": {"tile_forwards": 12, "seconds": 1.0}}
    assert "stopped in its first design" in summary_text(expl)
