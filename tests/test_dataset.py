import pytest
import torch
from torch.utils.data import DataLoader

from focalstack.data import FocalStackDataset, SampleError, StackAugment
from focalstack.optics import CameraBatch


def test_items_and_batching(tiny_dataset):
    ds = FocalStackDataset(tiny_dataset)
    assert len(ds) == 3 and ds.name(1) == "s001"
    it = ds[0]
    assert it["frames"].shape == (5, 3, 24, 28)
    assert it["depth"].shape == (1, 24, 28) and bool(it["has_depth"])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    cb = CameraBatch.from_dict(batch["camera"])
    assert cb.focus_distances_m.shape == (2, 5)
    assert cb.sigma_px(batch["depth"]).shape == (2, 5, 1, 24, 28)


def test_crop_flip_subset_permutation_stay_consistent(tiny_dataset):
    plain = FocalStackDataset(tiny_dataset)[0]
    ds = FocalStackDataset(tiny_dataset, StackAugment(crop_size=(16, 12), hflip=True, vflip=True,
                                                      num_frames=3, permute=True), seed=3)
    seen_orders = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        it = ds[0]
        assert it["frames"].shape == (3, 3, 16, 12)
        fd = it["camera"]["focus_distances_m"].tolist()
        all_fd = plain["camera"]["focus_distances_m"].tolist()
        order = [all_fd.index(x) for x in fd]
        seen_orders.add(tuple(order))
        # each kept frame is the matching original frame (up to the same crop/flip as the depth)
        full = plain["frames"][order]
        found = False
        for fl in ([], [-1], [-2], [-1, -2]):
            f2 = full.flip(fl) if fl else full
            d2 = plain["depth"].flip(fl) if fl else plain["depth"]
            for y in range(24 - 16 + 1):
                for x in range(28 - 12 + 1):
                    if torch.equal(f2[..., y:y + 16, x:x + 12], it["frames"]) and \
                            torch.equal(d2[..., y:y + 16, x:x + 12], it["depth"]):
                        found = True
        assert found
    assert len(seen_orders) > 1  # subsets/permutations vary with the epoch
    # deterministic for a given (seed, epoch, index)
    ds.set_epoch(2)
    a = ds[1]
    ds.set_epoch(2)
    assert torch.equal(a["frames"], ds[1]["frames"])


def test_crop_view_is_the_whole_stack_the_crop_was_cut_from(tiny_dataset):
    """crop_view: the item also holds its whole stack — the frames it uses in the sample's own order,
    unflipped — with their camera, the crop's top-left pixel and flips; cutting and flipping there gives
    back exactly the crop (every flip is seen), and one key names one whole stack whatever the draw."""
    from focalstack.models import CropView
    from focalstack.optics import CameraBatch
    ds = FocalStackDataset(tiny_dataset, StackAugment(crop_size=(16, 12), hflip=True, vflip=True, num_frames=3,
                                                      permute=True, crop_view=True), seed=1)
    plain = FocalStackDataset(tiny_dataset)[0]
    flips, keys = set(), {}
    for epoch in range(16):
        ds.set_epoch(epoch)
        it = ds[0]
        v = it["crop_view"]
        used = sorted(plain["camera"]["focus_distances_m"].tolist().index(z)
                      for z in it["camera"]["focus_distances_m"].tolist())
        assert torch.equal(v["frames"], plain["frames"][used])
        assert v["camera"]["focus_distances_m"].tolist() == plain["camera"]["focus_distances_m"][used].tolist()
        cv = CropView([v["frames"]], [None], [v["yx"]], [v["flips"]])
        order = [used.index(plain["camera"]["focus_distances_m"].tolist().index(z))
                 for z in it["camera"]["focus_distances_m"].tolist()]
        assert torch.equal(cv.cut(0, v["frames"], 16, 12)[order], it["frames"])
        flips.add(v["flips"])
        assert keys.setdefault(v["key"], tuple(used)) == tuple(used)
    assert len(flips) == 4 and len(keys) > 1
    assert "crop_view" not in FocalStackDataset(tiny_dataset, StackAugment(crop_size=(16, 12)))[0]


def test_collate_keeps_the_whole_stacks_of_crops_as_a_list():
    """collate_stacks pads the crops' frames; their whole stacks (any size, any frame count) stay a list."""
    from focalstack.data import collate_stacks

    def item(f, hw, i):
        cam = {k: torch.ones(()) for k in ("focal_length_m", "pixel_size_m", "psf_scale")}
        cam.update(focus_distances_m=torch.arange(1.0, f + 1), f_numbers=torch.full((f,), 2.0))
        v = torch.rand(f, 3, *hw)
        return {"frames": v[..., :8, :8].clone(), "camera": cam, "index": i,
                "crop_view": {"frames": v, "camera": cam, "yx": (0, 0), "flips": (False, False), "key": str(i)}}

    b = collate_stacks([item(4, (10, 12), 0), item(2, (9, 16), 1)])
    assert b["frames"].shape == (2, 4, 3, 8, 8)
    assert [tuple(v["frames"].shape) for v in b["crop_view"]] == [(4, 3, 10, 12), (2, 3, 9, 16)]
    assert [v["key"] for v in b["crop_view"]] == ["0", "1"]


def test_errors(tiny_dataset):
    with pytest.raises(SampleError, match="9 were asked for"):
        FocalStackDataset(tiny_dataset, StackAugment(num_frames=9))[0]
    with pytest.raises(SampleError, match="crop 64×64 larger"):
        FocalStackDataset(tiny_dataset, StackAugment(crop_size=(64, 64)))[0]
    (tiny_dataset / "s001" / "aif.png").unlink()
    with pytest.raises(SampleError, match="s001: aif.png is required"):
        FocalStackDataset(tiny_dataset, require_aif=True)[1]
