import os
from pathlib import Path

# Under pytest-xdist every worker gets one core: letting each start a full thread pool makes the
# workers fight over the cores (about 10× slower on the 2-core CI machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

from focalstack.data import FocalStackSample, save_sample
from focalstack.optics import get_preset
from focalstack.render import render_stack

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: intra-op threads only add contention (pytest -n 2 on 2 cores). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA.resolve()


def tiny_sample(seed: int = 0, hw=(24, 28), name="s") -> FocalStackSample:
    """A small random-texture, two-plane scene rendered through the procedural camera."""
    g = torch.Generator().manual_seed(seed)
    cam = get_preset("procedural")
    h, w = hw
    aif = torch.rand(1, 3, h, w, generator=g)
    depth = torch.full((1, 1, h, w), 0.7)
    depth[..., :, w // 2:] = 2.5
    frames = render_stack(aif, depth, cam, kernel_size=9)[0]
    return FocalStackSample(frames, cam, depth[0, 0], aif[0], name=name)


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    for i in range(3):
        save_sample(tiny_sample(i, name=f"s{i}"), root / f"s{i:03d}")
    return root
