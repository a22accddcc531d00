"""The docs' Python examples run as written, on the demo: the README's API example, and the
Extending guide's new value function and new kind of player, explained end to end."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from doc_commands import ROOT, python_blocks

pytestmark = pytest.mark.slow


def run_blocks(blocks: list[str]) -> dict:
    namespace: dict = {"__name__": "doc_example"}
    for code in blocks:
        exec(compile(code, "doc_example", "exec"), namespace)     # noqa: S102 - our own docs
    return namespace


def test_the_readme_api_example_runs_on_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns = run_blocks(python_blocks(ROOT / "README.md", "Python API"))
    expl, printed = ns["expl"], capsys.readouterr().out.splitlines()
    table = expl.table
    assert printed[0] == expl.resolution[0] and len(printed) == 4
    assert [abs(r["phi"]) for r in table] == sorted((abs(r["phi"]) for r in table), reverse=True)
    content = expl.content
    assert np.isclose(expl.phi.sum(), content["full_value"] - content["base_value"], atol=1e-9)
    ct = sitk.ReadImage(ns["f"]["ct"])
    ids = ns["ids"]
    assert ids.shape == sitk.GetArrayFromImage(ct).shape
    assert set(np.unique(ids)) == {-1, *range(len(expl.phi))}                  # every player on the map
    saved = tmp_path / "my_demo_explanation"
    assert expl.out == saved and (saved / "report.png").is_file()
    from ShapSegExplainLib import Explanation
    assert Explanation.load(saved).table == table


@pytest.fixture
def restore_registries():
    """The guide registers parts for the whole process; put the tables back after the test."""
    from ShapSegExplainLib import choices
    from ShapSegExplainLib.players.maps import PLAYER_KINDS
    from ShapSegExplainLib.shapley.values import VALUE_KINDS
    saved = dict(PLAYER_KINDS), dict(VALUE_KINDS), {k: list(v) for k, v in choices._ADDED.items()}
    yield
    for table, old in zip((PLAYER_KINDS, VALUE_KINDS, choices._ADDED), saved):
        table.clear()
        table.update(old)


def test_the_extending_guide_adds_a_value_and_a_player_kind_end_to_end(restore_registries, capsys):
    from ShapSegExplainLib.cli import build_parser
    blocks = python_blocks(ROOT / "docs" / "extending.md")
    assert len(blocks) == 3
    ns = run_blocks(blocks[:2])
    args = build_parser().parse_args(["explain", "--ct", "c", "--model", "m", "--target", "t", "--out", "o",
                                      "--roi-mask", "r", "--players", "slab", "--value", "soft_volume"])
    assert (args.players, args.value) == ("slab", "soft_volume")             # the command line takes both
    ns = run_blocks(blocks)
    expl = ns["expl"]
    content = expl.content
    assert content["value"]["name"] == "soft_volume" and content["value"]["unit"] == "mL"
    assert {r["kind"] for r in content["players"]} == {"slab"}
    assert all(" slab " in r["name"] for r in content["players"])
    assert np.isclose(expl.phi.sum(), content["full_value"] - content["base_value"], atol=1e-9)
    # the value is what it says: the model's summed kidney probability in the region, in mL
    # (the soft false-positive volume with no reference counts every voxel: the same sum)
    assert content["full_value"] > 0
    # each player lies in one slab (round(20 mm / 3 mm) = 7 slices; the demo model's grid is the CT's)
    ct = sitk.ReadImage(ns["f"]["ct"])
    ids, thickness = expl.player_map, round(20 / ct.GetSpacing()[2])
    extents = []
    for pid in range(len(expl.phi)):
        z = np.nonzero((ids == pid).any(axis=(1, 2)))[0]
        assert z.max() - z.min() + 1 <= thickness
        extents.append((z.min(), z.max()))
    assert max(lo for lo, _ in extents) > min(hi for _, hi in extents)     # two players in disjoint slabs
    assert len(capsys.readouterr().out.splitlines()) == 3
