"""The fused mean absolute error (focalstack.l1) against torch's autograd of (p − t).abs().mean()."""

import pytest
import torch

from focalstack.l1 import _TASK_ELEMENTS, mean_abs_error, mean_abs_error_reference
from focalstack.render import backends

needs_numba = pytest.mark.skipif(not backends.HAVE_NUMBA, reason="numba is not importable")


def _pair(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype), torch.rand(shape, generator=g, dtype=dtype)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# one task, and several tasks over the threads (the partial sums must all be counted)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (3, 3, 300, 301)])   # 1 task; 4 tasks
def test_value_and_gradients_match_torch(dtype, shape):
    p, t = _pair(shape, dtype)
    t.view(-1)[::5] = p.view(-1)[::5]                 # exact ties: sign(0) = 0, as torch's abs backward
    out = {}
    for name, fn in [("fused", mean_abs_error), ("torch", mean_abs_error_reference)]:
        pp, tt = p.clone().requires_grad_(True), t.clone().requires_grad_(True)
        loss = fn(pp, tt)
        (3.0 * loss).backward()                          # an incoming gradient ≠ 1
        out[name] = (loss.detach(), pp.grad, tt.grad)
    assert out["fused"][0].dtype == dtype
    torch.testing.assert_close(out["fused"][0], out["torch"][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(out["fused"][1], out["torch"][1], rtol=1e-6, atol=0)
    torch.testing.assert_close(out["fused"][2], out["torch"][2], rtol=1e-6, atol=0)
    assert torch.all(out["fused"][1].view(-1)[::5] == 0)


@needs_numba
def test_gradient_one_is_passed_on_and_a_second_backward_recomputes():
    p, t = _pair((2, 3, 9, 8), torch.float64, seed=1)
    p.requires_grad_(True)
    loss = mean_abs_error(p, t)
    loss.backward(retain_graph=True)
    first = p.grad.clone()
    torch.testing.assert_close(first, torch.sign(p.detach() - t) / p.numel())
    loss.backward()                                      # accumulates: the same gradient again
    torch.testing.assert_close(p.grad, 2 * first)


@needs_numba
def test_gradcheck_float64():
    p, t = _pair((1, 2, 4, 5), torch.float64, seed=2)
    t = t + 0.5 * (t > 0.5)                             # no ties near the kink of |·|
    p.requires_grad_(True)
    t.requires_grad_(True)
    assert torch.autograd.gradcheck(mean_abs_error, (p, t))


def test_without_gradient_it_is_torch_and_the_same_value():
    p, t = _pair((2, 3, 5, 4), torch.float32, seed=3)
    with torch.no_grad():
        v = mean_abs_error(p.requires_grad_(True), t)
    assert v.grad_fn is None
    torch.testing.assert_close(v, (p.detach() - t).abs().mean())
