"""Fused render backends ("cpu": numba, "triton") against the reference oracle, and the
render benchmark's plumbing."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from focalstack.render import defocus, defocus_reference, pick_backend
from focalstack.render import backends as fused

needs_numba = pytest.mark.skipif(not fused.HAVE_NUMBA, reason="numba is not importable")
HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_cuda_triton = pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()),
                                       reason="needs triton and a CUDA device")

PSFS = ["gaussian", "disk"]


def make_inputs(b, c, h, w, sigma_max, dtype=torch.float32, seed=0, zero_every=4):
    """Image in [0, 1); σ uniform in [0, sigma_max] with exact zeros (in-focus pixels)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    sigma = torch.rand(b, 1, h, w, generator=g, dtype=torch.float64) * sigma_max
    sigma.view(-1)[::zero_every] = 0.0
    return image.to(dtype), sigma.to(dtype)


def cpu_backend(image, sigma, radius, psf):
    return defocus(image, sigma, kernel_size=2 * radius + 1, psf=psf, backend="cpu")


# --------------------------------------------------------------------------- registration


@needs_numba
def test_auto_picks_cpu_for_cpu_tensors():
    image, sigma = make_inputs(1, 3, 9, 11, 1.0)
    assert pick_backend(image) == "cpu"
    out = defocus(image, sigma, kernel_size=5)  # auto
    torch.testing.assert_close(out, cpu_backend(image, sigma, 2, "gaussian"), rtol=0, atol=0)


def test_triton_is_never_auto_picked_for_cpu_tensors():
    image, _ = make_inputs(1, 1, 4, 4, 1.0)
    assert pick_backend(image) in ("cpu", "reference")


# --------------------------------------------------------------------------- forward


FORWARD_CASES = [
    # (b, c, h, w, kernel_size, sigma_max)
    (2, 3, 13, 17, 1, 2.0),
    (2, 3, 13, 17, 3, 0.7),
    (1, 1, 16, 16, 7, 2.0),
    (3, 4, 9, 23, 7, 1.0),
    (1, 3, 20, 19, 15, 3.0),
    (1, 3, 24, 21, 15, 50.0),     # σ far beyond the window: a moderate kernel, still exact
    (2, 1, 1, 9, 7, 1.5),         # one row: every tap but one row is outside
    (1, 3, 5, 2, 15, 4.0),        # window larger than the image
]


@needs_numba
@pytest.mark.parametrize("psf", PSFS)
@pytest.mark.parametrize("case", FORWARD_CASES, ids=lambda c: "b{}c{}_{}x{}_k{}_s{}".format(*c))
def test_forward_matches_reference_float32(case, psf):
    b, c, h, w, k, smax = case
    image, sigma = make_inputs(b, c, h, w, smax, seed=k)
    ref = defocus_reference(image, sigma, k // 2, psf)
    out = cpu_backend(image, sigma, k // 2, psf)
    assert out.dtype == torch.float32 and out.shape == image.shape
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@needs_numba
@pytest.mark.parametrize("psf", PSFS)
def test_forward_matches_reference_float64_and_borders(psf):
    image, sigma = make_inputs(2, 3, 15, 12, 2.5, dtype=torch.float64, seed=3)
    ref = defocus_reference(image, sigma, 4, psf)
    out = cpu_backend(image, sigma, 4, psf)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    # border renormalisation: a constant image stays constant, up to the corners
    const = torch.full_like(image, 0.25)
    torch.testing.assert_close(cpu_backend(const, sigma, 4, psf), const, rtol=0, atol=1e-14)


@needs_numba
def test_zero_sigma_is_identity_and_stack_folding_matches():
    image, sigma = make_inputs(2, 3, 10, 12, 1.0)
    torch.testing.assert_close(cpu_backend(image, torch.zeros_like(sigma), 3, "gaussian"), image,
                               rtol=0, atol=1e-6)
    # a focal stack folds [B, F] into the batch: aif expanded over F frames, one σ per frame
    b, f = 2, 3
    aif = image
    sig_bf = make_inputs(b * f, 1, 10, 12, 1.5, seed=7)[1].view(b, f, 1, 10, 12)
    folded = aif.unsqueeze(1).expand(b, f, 3, 10, 12).reshape(b * f, 3, 10, 12)
    out = cpu_backend(folded, sig_bf.reshape(b * f, 1, 10, 12), 3, "gaussian").view(b, f, 3, 10, 12)
    for k in range(f):
        ref = defocus_reference(aif, sig_bf[:, k].contiguous(), 3, "gaussian")
        torch.testing.assert_close(out[:, k], ref, rtol=0, atol=1e-5)


@needs_numba
def test_non_contiguous_inputs():
    base_img, base_sig = make_inputs(2, 3, 14, 18, 1.2)
    image = base_img.permute(0, 1, 3, 2)                        # transposed view
    sigma = base_sig.permute(0, 1, 3, 2)
    cl = base_img.contiguous(memory_format=torch.channels_last)  # channels-last strides
    sliced_img = torch.stack([base_img, 1 - base_img], -1)[..., 0]  # stride-2 columns
    assert not image.is_contiguous() and not sliced_img.is_contiguous()
    ref_t = defocus_reference(image.contiguous(), sigma.contiguous(), 2, "gaussian")
    torch.testing.assert_close(cpu_backend(image, sigma, 2, "gaussian"), ref_t, rtol=0, atol=1e-5)
    from focalstack.render.backends.cpu import defocus_cpu   # direct call: makes its own copies
    torch.testing.assert_close(defocus_cpu(image, sigma, 2), ref_t, rtol=0, atol=1e-5)
    ref = defocus_reference(base_img, base_sig, 2, "disk")
    torch.testing.assert_close(cpu_backend(cl, base_sig, 2, "disk"), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(defocus_cpu(sliced_img, base_sig, 2, "disk"), ref, rtol=0, atol=1e-5)


@needs_numba
def test_thread_count_does_not_change_the_result_and_empty_batch():
    image, sigma = make_inputs(3, 3, 33, 20, 1.5)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_backend(image, sigma, 3, "gaussian")
        torch.set_num_threads(3)
        three = cpu_backend(image, sigma, 3, "gaussian")
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, three)
    empty = cpu_backend(image[:0], sigma[:0], 3, "gaussian")
    assert empty.shape == (0, 3, 33, 20)


@needs_numba
@pytest.mark.parametrize("k", [7, 35])   # per-radius Gaussian kernels (R ≤ 16) and the general ones
def test_bands_and_thread_counts_agree_with_the_reference(k):
    """One tall image is cut into row bands with halos (and a batch of 5 over 2 threads into
    bands too): values and both gradients must not depend on the cut or the thread count."""
    from focalstack.render.backends import cpu
    for shape in [(1, 3, 70, 9), (5, 2, 37, 11)]:
        image, sigma = make_inputs(*shape, 2.0, seed=k)
        cot = make_inputs(*shape, 1.0, seed=k + 1)[0] - 0.5
        _, (ri, rs) = grads(defocus_reference, image.double(), sigma.double(), k // 2, "gaussian", cot.double())
        n = torch.get_num_threads()
        results = []
        try:
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                results.append(grads(cpu_backend, image, sigma, k // 2, "gaussian", cot))
        finally:
            torch.set_num_threads(n)
        assert cpu._rows_per_band(shape[0], shape[2], 2, k // 2) < shape[2]   # really banded
        ref = defocus_reference(image.double(), sigma.double(), k // 2, "gaussian")
        for out, (gi, gs) in results:
            torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
            assert_rel_close(gi.double(), ri, 1e-4)
            assert_rel_close(gs.double(), rs, 1e-4)
            assert torch.equal(out, results[0][0])


@needs_numba
@pytest.mark.parametrize("need_sigma", [True, False])
def test_wide_gaussian_windows_split_their_row_taps_and_agree_with_the_reference(need_sigma):
    """R = 15: the forward's and the backward's row taps run in two unrolled passes
    (cpu_gaussian._FWD/_BWD_TAPS_PER_PASS); with σ up to 6 px the taps past the first pass carry
    weight, so values and gradients must still match the float64 reference."""
    from focalstack.render.backends import cpu_gaussian
    radius = 15
    assert radius > cpu_gaussian._FWD_TAPS_PER_PASS and radius > cpu_gaussian._BWD_TAPS_PER_PASS
    image, sigma = make_inputs(2, 3, 26, 41, 6.0, seed=5)
    cot = make_inputs(2, 3, 26, 41, 1.0, seed=6)[0] - 0.5
    need = (True, need_sigma)
    ref_out, ref_g = grads(defocus_reference, image.double(), sigma.double(), radius, "gaussian", cot.double(), need)
    out, g = grads(cpu_backend, image, sigma, radius, "gaussian", cot, need)
    torch.testing.assert_close(out.double(), ref_out, rtol=0, atol=2e-6)
    assert_rel_close(g[0].double(), ref_g[0], 2e-6)
    if need_sigma:   # float32 sums over 31² taps: ~1e-4 of the largest ∂L/∂σ (as before the split)
        assert_rel_close(g[1].double(), ref_g[1], 3e-4)


@needs_numba
def test_per_radius_kernels_are_resolved_once():
    """The per-radius Gaussian kernels are called through their compiled entry point: a second
    call with the same radius and dtypes must not add a specialisation (re-entering numba's
    dispatcher costs ~5 ms per call under its compiler lock)."""
    from focalstack.render.backends import cpu
    image, sigma = make_inputs(2, 3, 12, 12, 1.0)
    cpu_backend(image, sigma, 2, "gaussian")
    n = len(cpu._entry_points)
    cpu_backend(image, sigma, 2, "gaussian")
    cpu_backend(image * 0.5, sigma, 2, "gaussian")
    assert len(cpu._entry_points) == n
    assert any(str(key[1][4]) == "Literal[int](2)" for key in cpu._entry_points)


@needs_numba
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_fresh_thread_pool():
    """A forked DataLoader worker inherits the pool object but not its threads: the kernels
    must not wait on them. (torch ops themselves need torch.set_num_threads(1) after a fork,
    which DataLoader does, so the child drives the pool directly.)"""
    import numpy as np

    from focalstack.render.backends import cpu
    image, sigma = make_inputs(2, 3, 20, 20, 1.0)
    args = lambda out, den: (image.numpy(), sigma.numpy(), out, den, 2, False, 1e-30, 4)  # noqa: E731
    out, den = np.empty(image.shape, np.float32), np.empty(sigma.shape, np.float32)
    cpu._run_parallel(cpu._forward_kernel, args(out, den), 2)   # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        import signal
        signal.alarm(30)   # a hang (waiting on the parent's threads) kills the child: a failure
        o2, d2 = np.empty_like(out), np.empty_like(den)
        cpu._run_parallel(cpu._forward_kernel, args(o2, d2), 2)
        os._exit(0 if np.array_equal(o2, out) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    ref = defocus_reference(image, sigma, 2, "gaussian")
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- backward


def grads(fn, image, sigma, radius, psf, cot, need=(True, True)):
    img = image.clone().requires_grad_(need[0])
    sig = sigma.clone().requires_grad_(need[1])
    out = fn(img, sig, radius, psf)
    inputs = [t for t, n in zip((img, sig), need) if n]
    gs = torch.autograd.grad(out, inputs, cot)
    it = iter(gs)
    return out, [next(it) if n else None for n in need]


def assert_rel_close(a, b, rel):
    scale = b.abs().max().clamp_min(1e-30)
    err = (a - b).abs().max() / scale
    assert err <= rel, f"relative error {err:.3g} > {rel:g}"


@needs_numba
@pytest.mark.parametrize("psf", PSFS)
@pytest.mark.parametrize("dtype,rel", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("shape,k,smax", [((2, 3, 12, 15), 3, 1.0), ((1, 4, 11, 9), 7, 2.0),
                                          ((1, 1, 16, 13), 15, 8.0)])
def test_gradients_match_reference(psf, dtype, rel, shape, k, smax):
    image, sigma = make_inputs(*shape, smax, dtype=dtype, seed=k)
    cot = make_inputs(*shape, 1.0, dtype=dtype, seed=k + 100)[0] - 0.5
    # the oracle in float64 on the very same inputs: the float32 reference itself is only
    # good to ~3e-5 in ∂L/∂σ, so float32 is held to 1e-4 of the exact gradient
    _, (ri, rs) = grads(defocus_reference, image.double(), sigma.double(), k // 2, psf, cot.double())
    _, (gi, gs) = grads(cpu_backend, image, sigma, k // 2, psf, cot)
    assert gi.dtype == dtype and gs.dtype == dtype
    assert_rel_close(gi.double(), ri, rel)
    assert_rel_close(gs.double(), rs, rel)
    # the clamp: ∂L/∂σ is exactly 0 where σ < SIGMA_MIN_PX (σ = 0 pixels)
    assert torch.all(gs[sigma == 0] == 0)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("psf", PSFS)
def test_a_window_per_image_equals_rendering_each_image_alone(backend, psf):
    """kernel_size as one odd size per image: each image is rendered, and differentiated, exactly as
    if it had been rendered alone with its own window (the cpu backend runs runs of equal windows
    in one parallel region; other backends one call per run)."""
    if backend == "cpu" and not fused.HAVE_NUMBA:
        pytest.skip("numba is not importable")
    ks = [9, 3, 3, 13, 9]                     # runs of equal windows, and a window repeated apart
    image, sigma = make_inputs(5, 3, 21, 18, 2.0, dtype=torch.float64, seed=3)
    cot = make_inputs(5, 3, 21, 18, 1.0, dtype=torch.float64, seed=4)[0] - 0.5
    run = lambda img, sig, r, p: defocus(img, sig, kernel_size=ks, psf=p, backend=backend)  # noqa: E731
    out, (gi, gs) = grads(run, image, sigma, None, psf, cot)
    for i, k in enumerate(ks):
        one = lambda img, sig, r, p: defocus(img, sig, kernel_size=k, psf=p, backend=backend)  # noqa: E731
        want, (wi, ws) = grads(one, image[i:i + 1], sigma[i:i + 1], None, psf, cot[i:i + 1])
        torch.testing.assert_close(out[i:i + 1], want, rtol=0, atol=1e-12)
        torch.testing.assert_close(gi[i:i + 1], wi, rtol=0, atol=1e-12)
        torch.testing.assert_close(gs[i:i + 1], ws, rtol=0, atol=1e-12)
    # the windows really differ: one window for all (the largest) gives another result
    assert not torch.allclose(out, defocus(image, sigma, kernel_size=13, psf=psf, backend=backend), atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_per_image_window_is_each_images_own_3_sigma_window_capped(backend):
    """window="per_image": image i gets window_size_px(max σ_i), at most kernel_size."""
    if backend == "cpu" and not fused.HAVE_NUMBA:
        pytest.skip("numba is not importable")
    from focalstack.render import window_size_px
    image, sigma = make_inputs(4, 3, 20, 22, 1.0, dtype=torch.float64, seed=8)
    sigma = sigma * torch.tensor([0.3, 1.0, 2.5, 4.0], dtype=torch.float64).view(4, 1, 1, 1)
    for cap in (None, 9):
        want_k = [window_size_px(float(s.max()), "gaussian", cap) for s in sigma]
        assert len(set(want_k)) > 1
        got = defocus(image, sigma, kernel_size=cap, backend=backend, window="per_image")
        torch.testing.assert_close(got, defocus(image, sigma, kernel_size=want_k, backend=backend), rtol=0, atol=0)
    assert max(want_k) == 9                                   # the cap held
    with pytest.raises(ValueError, match="window"):
        defocus(image, sigma, window="tiles")


def test_a_window_per_image_is_checked():
    image, sigma = make_inputs(2, 1, 8, 8, 1.0)
    with pytest.raises(ValueError, match="2 images"):
        defocus(image, sigma, kernel_size=[3, 3, 3])
    with pytest.raises(ValueError, match="odd"):
        defocus(image, sigma, kernel_size=[3, 4])


@needs_numba
@pytest.mark.parametrize("psf", PSFS)
def test_no_nan_for_sigma_from_0_to_50(psf):
    """σ anywhere in [0, 50] px (exact zeros included), windows 3…31: values and both gradients
    finite, and equal to the float64 reference."""
    for k in (3, 15, 31):
        image, sigma = make_inputs(2, 3, 19, 23, 50.0, seed=k)
        cot = make_inputs(2, 3, 19, 23, 1.0, seed=k + 1)[0] - 0.5
        out, (gi, gs) = grads(cpu_backend, image, sigma, k // 2, psf, cot)
        assert torch.isfinite(out).all() and torch.isfinite(gi).all() and torch.isfinite(gs).all()
        ref, (ri, rs) = grads(defocus_reference, image.double(), sigma.double(), k // 2, psf, cot.double())
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
        assert_rel_close(gi.double(), ri, 1e-4)
        assert_rel_close(gs.double(), rs, 1e-4)


@needs_numba
@pytest.mark.parametrize("need", [(True, False), (False, True)])
def test_gradient_of_one_input_only(need):
    image, sigma = make_inputs(2, 3, 10, 11, 1.5, dtype=torch.float64)
    cot = make_inputs(2, 3, 10, 11, 1.0, dtype=torch.float64, seed=5)[0]
    _, ref = grads(defocus_reference, image, sigma, 2, "gaussian", cot, need)
    _, got = grads(cpu_backend, image, sigma, 2, "gaussian", cot, need)
    for g, r in zip(got, ref):
        assert (g is None) == (r is None)
        if r is not None:
            assert_rel_close(g, r, 1e-10)


@needs_numba
@pytest.mark.parametrize("psf", PSFS)
def test_gradcheck_float64(psf):
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    # σ away from the clamp; the disk's clamp kinks are measure-zero for random σ
    sigma = (0.2 + torch.rand(1, 1, 5, 6, generator=g, dtype=torch.float64)).requires_grad_()
    fn = lambda i, s: cpu_backend(i, s, 2, psf)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (image, sigma), eps=1e-6, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------- triton

TRITON_SCRIPT = textwrap.dedent("""
    import torch
    from focalstack.render import defocus_reference
    from focalstack.render.backends import triton_gpu as T
    assert T.interpreting()
    torch.manual_seed(0)
    worst = 0.0
    for dtype, psf, radius, shape in [
            (torch.float32, "gaussian", 1, (1, 3, 6, 9)), (torch.float32, "gaussian", 2, (2, 1, 5, 7)),
            (torch.float32, "disk", 2, (1, 4, 7, 5)), (torch.float64, "gaussian", 1, (1, 3, 4, 6)),
            (torch.float64, "disk", 1, (1, 3, 4, 6))]:
        img = torch.rand(shape, dtype=dtype, requires_grad=True)
        sig = torch.rand(shape[0], 1, *shape[2:], dtype=dtype) * 2
        sig.view(-1)[::3] = 0
        sig.requires_grad_()
        cot = torch.rand(shape, dtype=dtype)
        o = T.defocus_triton(img, sig, radius, psf)
        i64 = img.detach().double().requires_grad_()
        s64 = sig.detach().double().requires_grad_()
        r = defocus_reference(i64, s64, radius, psf)       # float64 oracle on the same inputs
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert (o.double() - r).abs().max() <= tol, (psf, radius, (o.double() - r).abs().max())
        g = torch.autograd.grad(o, (img, sig), cot)
        gr = torch.autograd.grad(r, (i64, s64), cot.double())
        for a, b in zip(g, gr):
            assert a.dtype == dtype
            rel = ((a.double() - b).abs().max() / b.abs().max()).item()
            assert rel <= (1e-4 if dtype == torch.float32 else 1e-10), (psf, radius, rel)
            worst = max(worst, rel)
    print("TRITON-INTERPRETER-OK", worst)
""")


@pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")
def test_triton_kernels_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "TRITON-INTERPRETER-OK" in proc.stdout, proc.stderr[-3000:]


@needs_cuda_triton
@pytest.mark.parametrize("psf", PSFS)
@pytest.mark.parametrize("k", [1, 3, 7, 15])
def test_triton_on_cuda_matches_reference(psf, k):
    image, sigma = make_inputs(2, 3, 37, 45, 2.0, seed=k)
    image, sigma = image.cuda(), sigma.cuda()
    assert pick_backend(image) == "triton"
    cot = torch.rand_like(image) - 0.5
    ro, (ri, rs) = grads(defocus_reference, image.double(), sigma.double(), k // 2, psf, cot.double())
    to, (ti, ts) = grads(lambda *a: defocus(*a[:2], kernel_size=k, psf=psf, backend="triton"),
                         image, sigma, k // 2, psf, cot)
    torch.testing.assert_close(to.double(), ro, rtol=0, atol=1e-5)
    assert_rel_close(ti.double(), ri, 1e-4)
    assert_rel_close(ts.double(), rs, 1e-4)
    i64, s64 = image.double(), sigma.double()
    torch.testing.assert_close(defocus(i64, s64, kernel_size=k, psf=psf, backend="triton"),
                               defocus_reference(i64, s64, k // 2, psf), rtol=0, atol=1e-12)


def test_triton_refuses_cpu_tensors_outside_the_interpreter():
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    try:
        from focalstack.render.backends import triton_gpu
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"triton does not import: {e}")
    if triton_gpu.interpreting():
        pytest.skip("TRITON_INTERPRET is set")
    image, sigma = make_inputs(1, 1, 4, 4, 1.0)
    with pytest.raises(ValueError, match="CUDA"):
        defocus(image, sigma, kernel_size=3, backend="triton")


# --------------------------------------------------------------------------- benchmark


@needs_numba
def test_bench_render_cli_writes_table_and_json(tmp_path, capsys):
    from focalstack.cli import main
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    rc = main(["bench", "render", "--sizes", "16", "24", "--batch", "2", "--kernel-size", "3", "--repeats", "2",
               "--backends", "reference", "cpu", "--out", str(out_json), str(out_md)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "| cpu | 24² | forward+backward |" in table
    result = json.loads(out_json.read_text())
    assert out_md.read_text().strip() == table.strip()
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["time_ms"] > 0 and r["mpix_per_s"] > 0 and len(r["times_ms"]) == 2
        assert r["speedup_vs_reference"] > 0
    assert result["config"]["kernel_size"] == 3


def test_bench_reports_a_failing_backend_instead_of_crashing():
    from focalstack.bench import format_markdown, run_render_bench
    result = run_render_bench(sizes=[8], batch=1, kernel_size=3, repeats=1, backends=["reference", "nope"],
                              modes=["forward"])
    rows = {r["backend"]: r for r in result["rows"]}
    assert rows["reference"]["status"] == "ok"
    assert rows["nope"]["status"].startswith("failed")
    assert "failed" in format_markdown(result)


@needs_numba
def test_kernel_cache_folder_is_keyed_on_every_numba_source():
    """numba stamps a cached kernel with its own file only; a change to an inlined helper in
    another module must not reuse a stale kernel, so all kernels cache under a folder named by a
    hash of every backend module that holds numba code."""
    from pathlib import Path

    from focalstack.render.backends import _numba_cache, cpu, cpu_gaussian

    folder = _numba_cache.cache_dir()
    for kernel in (cpu._forward_kernel, cpu._backward_kernel, cpu_gaussian.forward_kernel,
                   cpu_gaussian.backward_kernel):
        assert kernel._cache._cache_path.startswith(folder + os.sep), kernel
    here = Path(cpu.__file__).parent
    with_numba = {p.name for p in here.glob("*.py") if re.search(r"^@njit", p.read_text(), re.M)}
    assert with_numba and with_numba <= set(_numba_cache.SOURCES)
