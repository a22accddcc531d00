"""The tile batch size chosen from memory (``--batch-size 0``)."""
import pytest

from ShapSegExplainLib.nnunet import memory
from ShapSegExplainLib.nnunet.model import load_model


def test_fit_takes_the_largest_power_of_two_that_fits_under_the_cap():
    assert memory.fit(100, 10_000, 0.5, 16) == 32 // 2          # 50 tiles fit: capped at 16
    assert memory.fit(100, 1_000, 0.5, 16) == 4                 # 5 fit: the power of two below
    assert memory.fit(100, 150, 0.5, 16) == 2                   # none fits: still two (one is another game)
    assert memory.fit(100, 10_000, 0.5, 4) == 4


def test_the_estimate_grows_with_the_patch_and_the_features():
    arch = {"features_per_stage": [8, 16, 32], "strides": [1, 2, [1, 2, 2]]}
    small = memory.estimated_tile_bytes(arch, (16, 32, 32), 3)
    assert memory.estimated_tile_bytes(arch, (32, 64, 64), 3) > 7 * small
    wide = {"features_per_stage": [16, 32, 64], "strides": arch["strides"]}
    assert memory.estimated_tile_bytes(wide, (16, 32, 32), 3) > 1.8 * small
    # stage 0: 8·16·32·32, stage 1: 16·8·16·16, stage 2: 32·8·8·8 voxels; output 3 channels
    sizes = [8 * 16 * 32 * 32, 16 * 8 * 16 * 16, 32 * 8 * 8 * 8]
    assert small == 4 * (2 * sum(sizes) + 3 * max(sizes) + 3 * 16 * 32 * 32)


@pytest.mark.parametrize("free, expected", [(1 << 40, 2), (0, 2)])
def test_a_cpu_run_takes_two_tiles_whatever_the_free_memory(model_dirs, monkeypatch, free, expected):
    monkeypatch.setattr(memory, "available_cpu_bytes", lambda: free)
    model = load_model(model_dirs["one_fold"], mirroring=False, device="cpu")
    assert model.settings.batch_size == 0 and model.batch_size == expected
    assert model.batch_choice.how == "cpu estimate" and model.batch_choice.tile_bytes > 0
    assert load_model(model_dirs["one_fold"], mirroring=False, device="cpu", batch_size=3).batch_size == 3


def test_a_cuda_out_of_memory_halves_the_batch_and_gives_the_same_outputs(model_dirs, monkeypatch):
    """Simulated on the CPU: the network call raises PyTorch's own CUDA OOM error above two
    tiles. The runner goes on at 4, then 2 tiles, later runners start at 2, and every tile's
    output is bitwise what an undisturbed batch of two gives; at two it stops in one line
    (one tile is nnU-Net's batch-of-one kernel: another game mid-run)."""
    import torch

    from ShapSegExplainLib.errors import ShapSegError
    from ShapSegExplainLib.nnunet.evaluator import CostCounters, TileRunner
    model = load_model(model_dirs["one_fold"], mirroring=False, device="cpu", batch_size=8)
    tiles = [torch.randn(1, *model.patch_size, generator=torch.Generator().manual_seed(i)) for i in range(7)]

    def run(runner):
        got = {}
        runner.run(tiles, CostCounters(), lambda i, out: got.__setitem__(i, out.clone()))
        return got
    expected = run(TileRunner(model, 2))
    real = model.forward_weighted
    calls = []

    def forward(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(batch)
    monkeypatch.setattr(model, "forward_weighted", forward)
    got = run(TileRunner(model, 8))
    assert calls[:3] == [7, 4, 2] and model.batch_halvings == [4, 2]        # 7 tiles: one call of 7 first
    assert sorted(got) == list(range(7)) and all(torch.equal(got[i], expected[i]) for i in range(7))
    assert model.batch_size == 2 and TileRunner(model, model.batch_size).batch_size == 2
    monkeypatch.setattr(model, "forward_weighted", lambda batch: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")))
    with pytest.raises(ShapSegError) as e:
        run(TileRunner(model, 2))
    assert e.value.code == "out_of_memory" and "2 tiles" in str(e.value) and "--batch-size 1" in str(e.value)
