"""Players: organ units, FCC supervoxels, hybrid organ-aware supervoxels and SLIC, on a phantom."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import call_cli
from players_helpers import (assert_connected, assert_nearest_lattice, assert_partition, assert_same,
                             brute_force_nearest, interior_cell_volumes, purities)
from ShapSegExplainLib.choices import PLAYERS
from ShapSegExplainLib.players.anatomy import (OTHER_TISSUE, OUTSIDE_BODY, body_mask, build_anatomy, clean_specks,
                                       read_label_names)
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.nnunet.evaluator import plan_roi
from ShapSegExplainLib.players.lattice import encode_cells, fcc_cell_volume_mm3, fcc_cells, fcc_nearest
from ShapSegExplainLib.nnunet.model import load_model
from ShapSegExplainLib.demo.phantom import make_phantom
from ShapSegExplainLib.players.stats import map_summary, player_table, players_per_tile
from ShapSegExplainLib.players.maps import PlayerSettings, build_players, support_mask
from ShapSegExplainLib.nnunet.roi import roi_from_mask
from ShapSegExplainLib.nnunet.tiles import pad_data


# ----- the lattice ------------------------------------------------------------------------
@pytest.mark.parametrize("spacing_mm", [7.0, 15.0])
def test_fcc_nearest_point_equals_brute_force(spacing_mm):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-60, 60, size=(20000, 3))
    got = fcc_nearest(pts, spacing_mm)
    assert ((got.sum(1) % 2) == 0).all()
    best = brute_force_nearest(pts, spacing_mm)
    a = spacing_mm / np.sqrt(2)
    d_got = np.linalg.norm(pts - got * a, axis=1)
    d_best = np.linalg.norm(pts - best * a, axis=1)
    np.testing.assert_allclose(d_got, d_best, atol=1e-9)
    assert (got == best).all(axis=1).mean() > 0.999  # differs only at exact ties


def test_fcc_nearest_on_an_anisotropic_voxel_grid():
    spacing, shape, d = np.array([3.0, 0.8, 1.3]), (9, 30, 21), 6.0
    cells = fcc_cells(shape, spacing, (4.2, 14.5, 10.0), d)
    pts = (np.indices(shape).reshape(3, -1).T - np.array([4.2, 14.5, 10.0])) * spacing
    best = brute_force_nearest(pts, d)
    a = d / np.sqrt(2)
    np.testing.assert_allclose(np.linalg.norm(pts - cells.reshape(-1, 3) * a, axis=1),
                               np.linalg.norm(pts - best * a, axis=1), atol=1e-9)


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (0.9, 0.4, 0.6)])
def test_fcc_cells_have_volume_d3_over_sqrt2(spacing):
    d = 8.0
    shape = tuple(int(60 / s) for s in spacing)
    cells = encode_cells(fcc_cells(shape, spacing, np.array(shape) / 2 - 0.3, d))
    border = np.zeros(shape, bool)
    for ax in range(3):
        border[(slice(None),) * ax + ([0, -1],)] = True
    ids, counts = np.unique(cells, return_counts=True)
    interior = ~np.isin(ids, np.unique(cells[border]))
    rel = counts[interior] * np.prod(spacing) / fcc_cell_volume_mm3(d)
    assert interior.sum() > 100
    assert abs(rel.mean() - 1) < 0.01
    assert np.abs(rel - 1).max() < 0.1


def test_lattice_is_anchored_at_the_roi_centre():
    spacing, d = np.array([3.0, 1.5, 1.5]), 12.0
    a = fcc_cells((12, 40, 40), spacing, (5.0, 20.0, 18.0), d)
    b = fcc_cells((12, 40, 40), spacing, (7.0, 23.0, 12.0), d)  # the same ROI, moved by whole voxels
    np.testing.assert_array_equal(a[5:10, 20:30, 18:28], b[7:12, 23:33, 12:22])
    assert (a[5, 20, 18] == 0).all()


# ----- a phantom case -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_case(model_dirs, tmp_path_factory):
    """Phantom CT at 3 mm with its label map and label file, one-fold model, ROI = ball at the left kidney."""
    tmp = tmp_path_factory.mktemp("phantom")
    ph = make_phantom(seed=5, spacing=(3.0, 3.0, 3.0))
    sitk.WriteImage(ph.ct, str(tmp / "ct.nii.gz"))
    sitk.WriteImage(ph.labels, str(tmp / "labels.nii.gz"))
    (tmp / "labels.json").write_text(json.dumps({str(k): v for k, v in ph.names.items()}))
    model = load_model(model_dirs["one_fold"], device="cpu")
    case = prepare_case(tmp / "ct.nii.gz", model)
    roi = roi_from_mask(case, _ball_at_label(ph.label_array, 3, radius_mm=9.0, spacing=3.0))
    plan = plan_roi(model, case, roi)
    return {"case": case, "plan": plan, "dir": tmp, "phantom": ph, "model": model}


def _ball_at_label(labels, value, radius_mm, spacing):
    c = np.argwhere(labels == value).mean(0)
    d = np.linalg.norm((np.indices(labels.shape).transpose(1, 2, 3, 0) - c) * spacing, axis=-1)
    return (d <= radius_mm).astype(np.int16)


def _build(pc, abstraction, source="file", **kw):
    settings = PlayerSettings(abstraction=abstraction, **kw)
    case, plan = pc["case"], pc["plan"]
    support = support_mask(plan, case.spacing, settings.margin_mm)
    if source == "file":
        anatomy = build_anatomy(case, plan, support, pc["dir"] / "labels.nii.gz", pc["dir"] / "labels.json",
                                speck_ml=settings.speck_ml)
    else:
        anatomy = build_anatomy(case, plan, support, None, speck_ml=settings.speck_ml)
    intensities = pad_data(case.model, case.data)[0][plan.crop].numpy()
    return build_players(plan, case.spacing, anatomy, support, settings, intensities)


@pytest.mark.parametrize("abstraction", PLAYERS)
def test_players_partition_the_crop(phantom_case, abstraction):
    pmap = _build(phantom_case, abstraction)
    plan = phantom_case["plan"]
    assert_partition(pmap, plan.image_in_crop)
    assert 3 <= pmap.n_players <= 300
    if abstraction != "organ":
        assert_connected(pmap)
    pur = purities(pmap)
    if abstraction in ("organ", "hybrid", "slic"):
        assert (pur == 1.0).all()
    assert_same(pmap, _build(phantom_case, abstraction))
    rows = player_table(pmap, plan, phantom_case["case"].spacing)
    np.testing.assert_allclose([r["purity"] for r in rows if r["kind"] != "context"], pur, atol=1e-6)


def test_organ_units_are_the_organs_in_the_support(phantom_case):
    pmap = _build(phantom_case, "organ")
    names = [p.name for p in pmap.players]
    assert names[-1] == "context (rest of crop)"
    assert "kidney_left" in names and OTHER_TISSUE in names
    codes = pmap.anatomy.codes
    for p in pmap.players[:-1]:
        code = pmap.anatomy.names.index(p.name)
        assert np.array_equal(pmap.ids == p.id, (codes == code) & pmap.support)


def test_other_tissue_is_split_into_body_and_outside_air(phantom_case):
    pc = phantom_case
    pmap = _build(pc, "organ", margin_mm=60.0)
    names = [p.name for p in pmap.players]
    assert OUTSIDE_BODY in names and OTHER_TISSUE in names
    hu = sitk.GetArrayFromImage(pc["phantom"].ct)
    body = body_mask(pc["phantom"].ct)
    assert (hu[~body] < -500).all()
    lungs_like = (hu < -500) & body  # bowel gas counts as body
    assert lungs_like.sum() > 0


def test_fcc_cells_follow_the_lattice_and_have_equal_volume(phantom_case):
    pc = phantom_case
    spacing = np.asarray(pc["case"].spacing)
    pmap = _build(pc, "fcc", spacing_mm=12.0, min_size_ml=0.0, margin_mm=30.0)
    assert_nearest_lattice(pmap, spacing)
    assert_connected(pmap)
    vol = interior_cell_volumes(pmap, spacing)
    assert len(vol) >= 5
    rel = vol / fcc_cell_volume_mm3(12.0)
    # 3 x 1.5 x 1.5 mm voxels, ~180 per cell: single cells within 20 %, the mean within 3 %
    assert abs(rel.mean() - 1) < 0.03 and np.abs(rel - 1).max() < 0.2


def test_small_border_fragments_merge_into_a_neighbour(phantom_case):
    spacing = np.asarray(phantom_case["case"].spacing)
    raw = _build(phantom_case, "fcc", min_size_ml=0.0)
    merged = _build(phantom_case, "fcc")
    voxel_ml = np.prod(spacing) / 1000
    sizes = np.bincount(merged.ids[merged.support]) * voxel_ml
    assert merged.n_players < raw.n_players
    assert sizes.min() >= merged.settings.min_ml - 1e-9
    # every merged player is a union of whole raw pieces
    for p in merged.players[:-1]:
        inside = np.unique(raw.ids[merged.ids == p.id])
        assert np.isin(raw.ids, inside).sum() == (merged.ids == p.id).sum()


def test_hybrid_players_never_cross_an_organ_boundary_and_merge_within_the_organ(phantom_case):
    pmap = _build(phantom_case, "hybrid")
    codes = pmap.anatomy.codes
    for p in pmap.players[:-1]:
        organ_codes = np.unique(codes[pmap.ids == p.id])
        assert organ_codes.size == 1 and pmap.anatomy.names[organ_codes[0]] == p.organ
    names = [p.name for p in pmap.players]
    assert len(set(names)) == len(names), "names are unique"


def test_default_anatomy_is_the_models_own_prediction(phantom_case):
    pmap = _build(phantom_case, "hybrid", source="model")
    assert pmap.anatomy.source == "model prediction"
    assert_partition(pmap, phantom_case["plan"].image_in_crop)
    assert_connected(pmap)
    assert (purities(pmap) == 1.0).all()
    labels = set(phantom_case["model"].dataset_json["labels"]) | {OTHER_TISSUE, OUTSIDE_BODY}
    assert {p.organ for p in pmap.players[:-1]} <= labels


def test_slic_without_anatomy_is_connected_but_may_cross_organs(phantom_case):
    pmap = _build(phantom_case, "slic", slic_anatomy=False)
    assert_partition(pmap, phantom_case["plan"].image_in_crop)
    assert_connected(pmap)
    assert all(p.name.startswith("region ") for p in pmap.players[:-1])


def test_summary_reports_players_per_tile(phantom_case):
    pc = phantom_case
    pmap = _build(pc, "hybrid")
    s = map_summary(pmap, pc["plan"], pc["case"].spacing)
    assert s["players"] == pmap.n_players and s["support_players"] == pmap.n_players - 1
    assert s["mean_purity"] == 1.0
    ppt = players_per_tile(pmap, pc["plan"])
    assert s["players_per_tile"] == ppt and len(ppt) == len(pc["plan"].tiles)
    assert 1 <= max(ppt) <= pmap.n_players


def test_speck_cleaning_changes_only_small_pieces():
    codes = np.ones((10, 12, 12), np.int32)
    codes[2:8, 2:8, 2:8] = 2
    codes[5, 10, 10] = 3      # a one-voxel speck in tissue
    codes[4, 4, 4] = 1        # a one-voxel hole in the organ
    support = np.ones(codes.shape, bool)
    out = clean_specks(codes, support, speck_voxels=2)
    assert out[5, 10, 10] == 1 and out[4, 4, 4] == 2
    assert ((out != codes).sum()) == 2


def test_network_to_ras_inverts_index_to_network(phantom_case, model_dirs):
    for model_key in ("one_fold", "aniso"):
        model = load_model(model_dirs[model_key], device="cpu")
        case = prepare_case(phantom_case["dir"] / "ct.nii.gz", model)
        size = np.array(case.ct.GetSize())
        rng = np.random.default_rng(0)
        for q in rng.integers(0, size, size=(20, 3)):
            n = case.index_to_network(tuple(float(v) for v in q))
            back = case.network_to_index(np.array([n], float))[0]
            ct_sp = np.array(case.ct.GetSpacing())
            # one network voxel in CT index units, per CT axis
            net_in_ct = np.abs(case.network_to_index(np.array([n]) + np.eye(3)) - back).max(0)
            assert (np.abs(back - q) <= 0.5 + net_in_ct / 2 + 1e-6).all(), (model_key, q, back)
            ras = case.network_to_ras(np.array([n], float))[0]
            lps = case.ct.TransformContinuousIndexToPhysicalPoint(back.tolist())
            np.testing.assert_allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-6)
            assert ct_sp.size == 3


# ----- anatomy inputs and bad input ---------------------------------------------------------
def test_label_names_from_json_dataset_json_and_colour_table(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"1": "spleen", "2": "kidney_right"}))
    (tmp_path / "b.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "kidney": [1, 2]}}))
    (tmp_path / "c.txt").write_text("# colour table\n0 background 0 0 0 0\n1 spleen 157 108 162 255\n")
    assert read_label_names(tmp_path / "a.json") == {1: "spleen", 2: "kidney_right"}
    assert read_label_names(tmp_path / "b.json") == {0: "background", 1: "spleen"}
    assert read_label_names(tmp_path / "c.txt") == {0: "background", 1: "spleen"}
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(ShapSegError, match="not valid JSON"):
        read_label_names(tmp_path / "d.json")


def test_seg_nrrd_anatomy_equals_the_label_map(phantom_case, tmp_path):
    import slicerio
    pc = phantom_case
    labels_img = pc["phantom"].labels
    arr = sitk.GetArrayFromImage(labels_img)
    direction = np.asarray(labels_img.GetDirection()).reshape(3, 3) * np.asarray(labels_img.GetSpacing())
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3], ijk_to_lps[:3, 3] = direction, labels_img.GetOrigin()
    seg = slicerio.create_segmentation(arr.shape[::-1], ijk_to_lps)
    for value, name in pc["phantom"].names.items():
        slicerio.add_segment(seg, (arr == value).transpose(2, 1, 0), {"id": name, "name": name})
    slicerio.write_segmentation(str(tmp_path / "anat.seg.nrrd"), seg)
    case, plan = pc["case"], pc["plan"]
    support = support_mask(plan, case.spacing, 20.0)
    a = build_anatomy(case, plan, support, tmp_path / "anat.seg.nrrd")
    b = build_anatomy(case, plan, support, pc["dir"] / "labels.nii.gz", pc["dir"] / "labels.json")
    assert a.names == b.names
    np.testing.assert_array_equal(a.codes, b.codes)


def test_bad_anatomy_and_settings_give_clear_errors(phantom_case, tmp_path):
    pc = phantom_case
    case, plan = pc["case"], pc["plan"]
    support = support_mask(plan, case.spacing, 20.0)
    wrong = sitk.Image([5, 5, 5], sitk.sitkUInt8)
    sitk.WriteImage(wrong, str(tmp_path / "small.nii.gz"))
    with pytest.raises(ShapSegError, match=r"anatomy map .*small.nii.gz size") as e:
        build_anatomy(case, plan, support, tmp_path / "small.nii.gz")
    assert e.value.code == "bad_anatomy"
    with pytest.raises(ShapSegError, match="not found"):
        build_anatomy(case, plan, support, tmp_path / "missing.nii.gz")
    frac = sitk.Cast(pc["phantom"].labels, sitk.sitkFloat32) * 0.5
    sitk.WriteImage(frac, str(tmp_path / "frac.nii.gz"))
    with pytest.raises(ShapSegError, match="non-integer"):
        build_anatomy(case, plan, support, tmp_path / "frac.nii.gz")
    for bad in ({"abstraction": "voronoi"}, {"spacing_mm": 0}, {"margin_mm": -1}, {"slic_segments": 0}):
        with pytest.raises(ShapSegError) as e:
            PlayerSettings(**bad).check()
        assert e.value.code == "bad_option"


# ----- the command line -------------------------------------------------------------------------
def _roi_box(pc):
    c = np.argwhere(pc["phantom"].label_array == 3).mean(0).round().astype(int)[::-1]  # i, j, k
    return ",".join(str(v) for v in (*(c - 2), *(c + 2)))


def test_cli_players_json_and_compare(phantom_case, model_dirs):
    pc = phantom_case
    common = ["players", "--ct", pc["dir"] / "ct.nii.gz", "--model", model_dirs["one_fold"], "--target", "1",
              "--roi-box", _roi_box(pc), "--anatomy", pc["dir"] / "labels.nii.gz",
              "--anatomy-labels", pc["dir"] / "labels.json", "--device", "cpu"]
    r = call_cli(*common, "--players", "fcc", "--spacing-mm", "12", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["summary"]["abstraction"] == "fcc"
    assert out["summary"]["players"] == len(out["players"])
    assert sum(p["voxels"] for p in out["players"]) == int(pc["plan"].image_in_crop.sum())
    r = call_cli(*common, "--compare")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1:5]] == list(PLAYERS)


def test_cli_players_bad_input_is_one_line(phantom_case, model_dirs, tmp_path):
    pc = phantom_case
    common = ["players", "--ct", pc["dir"] / "ct.nii.gz", "--model", model_dirs["one_fold"], "--target", "1",
              "--roi-box", _roi_box(pc), "--device", "cpu"]
    for extra, words in ((["--spacing-mm", "0"], "spacing-mm must be positive"),
                         (["--anatomy", tmp_path / "none.nii.gz"], "anatomy map not found"),
                         (["--anatomy", pc["dir"] / "labels.nii.gz", "--anatomy-labels", tmp_path / "x.json"],
                          "label file not found")):
        r = call_cli(*common, *extra)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().count("\n") == 0 and words in r.stderr, r.stderr


def test_large_label_values_survive(phantom_case, tmp_path):
    pc = phantom_case
    arr = pc["phantom"].label_array.astype(np.uint16)
    arr[arr == 3] = 40000                                     # beyond int16
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(pc["phantom"].labels)
    sitk.WriteImage(img, str(tmp_path / "big.nii.gz"))
    (tmp_path / "big.json").write_text(json.dumps({"40000": "kidney_left", "1": "liver"}))
    case, plan = pc["case"], pc["plan"]
    support = support_mask(plan, case.spacing, 20.0)
    a = build_anatomy(case, plan, support, tmp_path / "big.nii.gz", tmp_path / "big.json")
    b = build_anatomy(case, plan, support, pc["dir"] / "labels.nii.gz", pc["dir"] / "labels.json")
    assert "kidney_left" in a.names
    np.testing.assert_array_equal(a.codes == a.names.index("kidney_left"), b.codes == b.names.index("kidney_left"))


@pytest.mark.parametrize("abstraction", ["hybrid", "fcc"])
def test_levels_nest_and_every_level_is_a_partition(phantom_case, abstraction):
    """Coarse to fine: every node's children split it exactly, roots are the organ units
    (hybrid), each player of any level is one organ's (hybrid), and every frontier is a partition."""
    from ShapSegExplainLib.players.levels import build_tree
    case, plan = phantom_case["case"], phantom_case["plan"]
    settings = PlayerSettings(abstraction=abstraction, spacing_mm=6.0, margin_mm=9.0)
    support = support_mask(plan, case.spacing, settings.margin_mm)
    anatomy = build_anatomy(case, plan, support, phantom_case["dir"] / "labels.nii.gz",
                            phantom_case["dir"] / "labels.json", speck_ml=settings.speck_ml)
    tree = build_tree(plan, case.spacing, anatomy, support, settings, levels=3)
    atoms = tree.atoms
    assert_partition(atoms, plan.image_in_crop)
    for node in range(tree.n_nodes):
        kids = tree.children(node)
        if kids:
            joined = np.sort(np.concatenate([tree.node_atoms[k] for k in kids]))
            assert np.array_equal(joined, np.sort(tree.node_atoms[node])) and len(kids) >= 2
            assert all(tree.level[k] > tree.level[node] and tree.names[k].startswith(tree.names[node] + ".")
                       for k in kids)
    roots = tree.roots()
    assert np.array_equal(np.sort(np.concatenate([tree.node_atoms[r] for r in roots])), np.arange(atoms.n_players))
    frontier = list(roots)
    voxels = tree.node_voxels()
    while True:                           # refine the first splittable node until only leaves remain
        pmap = tree.player_map(frontier)
        assert_partition(pmap, plan.image_in_crop)
        assert np.array_equal(voxels[frontier], np.bincount(pmap.ids[pmap.ids >= 0], minlength=len(frontier)))
        if abstraction == "hybrid":
            assert (purities(pmap) == 1.0).all()
        split = [i for i, n in enumerate(frontier) if tree.children(frontier[i])]
        if not split:
            break
        i = split[0]
        frontier[i:i + 1] = tree.children(frontier[i])
    assert sorted(frontier) == sorted(n for n in range(tree.n_nodes) if not tree.children(n))
    if abstraction == "hybrid":
        organs = {anatomy.name(c) for c in np.unique(anatomy.codes[support])}
        assert {tree.names[r] for r in roots} == organs | {"context (rest of crop)"}
    fixed = build_tree(plan, case.spacing, anatomy, support, settings, levels=3, context=False)
    assert "context (rest of crop)" not in fixed.names and (fixed.atoms.ids[~support] == -1).all()
