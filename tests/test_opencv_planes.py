"""The OpenCV per-plane fast paths equal the torch definitions they stand in for."""

import pytest
import torch
import torch.nn.functional as F

from focalstack.classical import opencv_planes
from focalstack.classical.focus_measures import _pad
from focalstack.classical.focus_measures import box_mean as running_sum_box_mean


def test_serves_only_cpu_float32_without_gradients():
    x = torch.rand(1, 2, 8, 8)
    assert opencv_planes.serves(x)
    assert not opencv_planes.serves(x.double())
    assert not opencv_planes.serves(x.half())
    xg = x.clone().requires_grad_()
    assert not opencv_planes.serves(xg)
    assert not opencv_planes.serves(x, torch.ones(3, requires_grad=True))   # another input needs one
    with torch.no_grad():
        assert opencv_planes.serves(xg, torch.ones(3, requires_grad=True))  # no autograd: no gradient needed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_serves_no_gpu_tensor():
    assert not opencv_planes.serves(torch.rand(1, 1, 4, 4, device="cuda"))


@pytest.mark.parametrize("shape", [(2, 3, 17, 29), (5, 11, 13), (1, 2, 2, 9, 6)])
def test_box_mean_is_the_replicate_padded_running_sum(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=g)
    planes = x.reshape(1, -1, *shape[-2:])
    for k in (3, 7, 21):                                    # 21: wider than the smallest image
        ref = running_sum_box_mean(_pad(planes, k // 2), k).reshape(shape)
        out = opencv_planes.box_mean(x, k)
        assert out.shape == x.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)


def test_box_mean_of_a_strided_view_reads_the_view():
    x = torch.rand(2, 3, 12, 10)
    view = x[:, 1:]                                         # not contiguous in memory
    torch.testing.assert_close(opencv_planes.box_mean(view, 5), opencv_planes.box_mean(view.contiguous(), 5))


def test_separable_blur_is_the_reflect_padded_depthwise_convolution():
    g = torch.Generator().manual_seed(1)
    p, r = 6, 4
    x = torch.rand(2, 3, 19, 23, generator=g)
    taps = torch.rand(p, 2 * r + 1, generator=g)
    taps = taps / taps.sum(dim=1, keepdim=True)
    taps[2] = 0.0
    taps[2, r] = 1.0                                        # an identity plane: copied
    y = F.pad(x.reshape(1, p, 19, 23), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, taps.view(p, 1, 1, -1), groups=p)
    ref = F.conv2d(y, taps.view(p, 1, -1, 1), groups=p).view(2, 3, 19, 23)
    out = opencv_planes.separable_blur(x, taps, r)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)
    assert torch.equal(out[0, 2], x[0, 2])


def test_resize_bilinear_into_a_strided_view_is_interpolate():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 4, 7, 9, generator=g)
    volume = torch.zeros(2, 3, 4, 20, 27)
    opencv_planes.resize_bilinear_into(x, volume[:, 1])     # one version of a batch's volume
    ref = F.interpolate(x, size=(20, 27), mode="bilinear", align_corners=False)
    torch.testing.assert_close(volume[:, 1], ref, rtol=0, atol=2e-6)
    assert volume[:, 0].abs().max() == 0 and volume[:, 2].abs().max() == 0   # nothing written elsewhere
