"""The registries of parts and the torch-free names the command line, the job check and the panel
read agree: every built-in is in both, and a registered part is accepted by name until removed."""
from ShapSegExplainLib import choices
from ShapSegExplainLib.players.maps import PLAYER_KINDS
from ShapSegExplainLib.shapley.values import VALUE_KINDS


def test_the_built_ins_are_registered_under_the_names_the_panel_offers():
    assert tuple(PLAYER_KINDS) == choices.PLAYERS and choices.allowed("players") == choices.PLAYERS
    assert tuple(VALUE_KINDS) == choices.VALUES and choices.allowed("value") == choices.VALUES
    assert {k for k, v in VALUE_KINDS.items() if v.unit == "mL"} == {"tp", "fp", "soft_fp"}
    assert {k for k, v in VALUE_KINDS.items() if v.reference == "none"} == {"fp", "soft_fp"}
    assert [k for k, v in PLAYER_KINDS.items() if v.whole_organs] == ["organ"]


def test_adding_a_name_twice_keeps_one(monkeypatch):
    monkeypatch.setitem(choices._ADDED, "players", [])
    choices.add("players", "slab")
    choices.add("players", "slab")
    choices.add("players", "hybrid")                     # a built-in is never added again
    assert choices.allowed("players") == choices.PLAYERS + ("slab",)
