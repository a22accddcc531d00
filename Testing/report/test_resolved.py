"""A driver is numbered only when resolved; an unresolved result says so in words in the
CLI, the report and the panel, with the first (organ-level) answer where that one is resolved."""
import numpy as np

from ShapSegExplainLib.display import NOT_RESOLVED, player_styles, resolution_lines, resolved_count

# the finding of issue 42: three true drivers flattened, minor organs inflated, SEs of 15-31 mL
ISSUE_PHI = [3.39, 3.39, 2.86, 1.65, 1.52, 1.38, 1.32, 0.89]
ISSUE_SE = [15.0, 18.0, 16.0, 22.0, 31.0, 20.0, 19.0, 25.0]


def test_resolved_count():
    assert resolved_count([5.0, 5.0, 5.0, 1.0, 0.5], [0.3] * 5) == 3           # equal drivers: a resolved set
    assert resolved_count(ISSUE_PHI, ISSUE_SE) == 0
    assert resolved_count([5.0, 1.0, 0.95, 0.9], [0.1, 0.2, 0.2, 0.2]) == 1     # 2nd and 3rd tie with the 4th
    assert resolved_count([5.0, 4.0, 1.0], [np.nan, 0.1, 0.1]) == 0             # an unknown SE names nothing
    assert resolved_count([9.0, 2.0, 0.1], [0.1, 0.1, 0.1], drawn=[False, True, True]) == 1   # context aside
    assert resolved_count([2.0, -0.1], [0.01, 0.2]) == 1                        # clear of 0 and of the rest


def test_only_resolved_drivers_are_numbered():
    styles = player_styles(ISSUE_PHI, ISSUE_SE)
    assert not any(s.marked for s in styles)
    styles = player_styles([5.0, 1.0, 0.95, 0.9], [0.1, 0.2, 0.2, 0.2])
    assert [s.marked for s in styles] == [True, False, False, False]


def rows(phi, se, coarse=None):
    out = [{"id": i, "name": f"piece {i}", "kind": "hybrid", "phi": p, "se": s, "ml": 1.0}
           for i, (p, s) in enumerate(zip(phi, se))]
    for r, c in zip(out, coarse or []):
        r["coarse"] = c
    return out


def unresolved_result():
    """Seven pieces of four organs, none resolved; the organs' sums are (kidney and liver clear of the rest)."""
    phi, se = [1.0, 0.9, 0.8, 0.85, 0.2, 0.1, 0.05], [0.1] * 7
    return rows(phi, se, ["kidney", "kidney", "liver", "liver", "bowel", "bowel", "colon"])


def test_the_words_for_an_unresolved_result_and_its_resolved_first_answer():
    lines = resolution_lines(unresolved_result())
    assert lines[0] == NOT_RESOLVED
    assert lines[1] == "first answer (organ level): resolved: the top 2 (kidney, liver) stand clear of the rest"
    assert resolution_lines(rows([5.0, 0.1], [0.1, 0.1])) == ["resolved: piece 0 stands clear of the rest"]
    assert resolution_lines(rows([5.0, 0.1], [None, None])) == [NOT_RESOLVED]   # stopped in its first design


def explanation(players):
    return {"players": players, "value": {"name": "soft_fp", "normalized": False, "unit": "mL"},
            "target": {"name": "kidney_left"}, "full_value": 3.85, "base_value": 0.0, "additivity_error": 0.0,
            "shapley": {"n_evaluations": 36, "exact": False, "estimator": "GP", "convergence_ratio": 0.4,
                        "stop_reason": "budget", "history": []},
            "stats": {"tile_forwards": 300, "coalitions": 36, "tile_forwards_roi": 900, "cache_hits": 10, "seconds": 3.0},
            "out": "/tmp/x"}


def test_the_cli_says_it(capsys):
    from ShapSegExplainLib.cli import print_result
    print_result(explanation(unresolved_result()))
    out = capsys.readouterr().out
    assert NOT_RESOLVED in out and "first answer (organ level): resolved: the top 2 (kidney, liver)" in out


def test_the_panel_says_it():
    from ShapSegExplainLib.panel.result_view import summary_text
    text = summary_text(explanation(unresolved_result()))
    assert NOT_RESOLVED in text and "(kidney, liver)" in text


def test_the_report_says_it_and_numbers_nothing():
    from test_report import synthetic_result
    from ShapSegExplainLib.report.figure import draw_report
    inputs = synthetic_result()
    for r in inputs.expl["players"]:
        r["se"] = 1.0                                   # every interval wide: nothing can be named
    fig = draw_report(inputs)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(NOT_RESOLVED in t for t in titles)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert labels and not any(t.startswith("[") for t in labels)
