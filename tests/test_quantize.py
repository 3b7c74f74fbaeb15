import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqtool.quantize import VectorQuantizer


def quantiser(**kw) -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, **kw)
    vq.initialised.fill_(True)  # keep the random codebook for these checks
    return vq


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_nearest_is_brute_force_argmin(seed):
    gen = torch.Generator().manual_seed(seed)
    vq = quantiser()
    flat = torch.randn(50, 4, generator=gen)
    brute = torch.stack([((vq.embedding - row) ** 2).sum(1).argmin() for row in flat])
    assert torch.equal(vq.nearest(flat), brute)


def test_output_is_code_vector_and_gradient_passes_straight_through():
    vq = quantiser().eval()
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    out = vq(z)
    assert out.codes.shape == (2, 3, 5)
    assert torch.allclose(out.quantized, vq.lookup(out.codes))
    upstream = torch.randn_like(out.quantized)
    (out.quantized * upstream).sum().backward()
    assert torch.allclose(z.grad, upstream)


def test_commitment_loss_uses_beta():
    vq = quantiser(beta=0.25).eval()
    z = torch.randn(1, 4, 2, 2)
    out = vq(z)
    flat = z.movedim(1, -1).reshape(-1, 4)
    expected = 0.25 * ((flat - vq.embedding[out.codes.flatten()]) ** 2).mean()
    assert torch.allclose(out.loss, expected)


def test_ema_update_moves_codes_to_cluster_means():
    vq = quantiser(decay=0.5)
    z = torch.randn(1, 4, 8, 8)
    flat = z.movedim(1, -1).reshape(-1, 4)
    codes = vq.nearest(flat)
    before_sum, before_size = vq.embed_sum.clone(), vq.cluster_size.clone()
    vq.train()(z)
    counts = torch.bincount(codes, minlength=16).float()
    sums = torch.zeros(16, 4).index_add_(0, codes, flat)
    size = 0.5 * before_size + 0.5 * counts
    embed_sum = 0.5 * before_sum + 0.5 * sums
    live = size >= vq.restart_below
    assert torch.allclose(vq.cluster_size[live], size[live])
    assert torch.allclose(vq.embed_sum[live], embed_sum[live])
    n = size.sum()
    smoothed = (size + vq.eps) / (n + 16 * vq.eps) * n
    assert torch.allclose(vq.embedding[live], (embed_sum / smoothed[:, None])[live], atol=1e-5)


def test_dead_codes_restart_on_encoder_outputs():
    vq = quantiser()
    vq.cluster_size[:8] = 0.0  # codes 0..7 have fallen out of use
    z = torch.randn(1, 4, 4, 4) + 100  # far from every code
    vq.train()(z)
    flat = z.movedim(1, -1).reshape(-1, 4)
    for code in range(8):
        nearest_distance = ((flat - vq.embedding[code]) ** 2).sum(1).min()
        assert nearest_distance < 1.0
    assert (vq.cluster_size[:8] == 1.0).all()


def test_codebook_initialised_from_data():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4).train()
    z = torch.randn(2, 4, 8, 8) * 3 + 7
    vq(z)
    assert bool(vq.initialised)
    assert (vq.embedding.mean() - 7).abs() < 1.5


def test_perplexity_and_usage():
    vq = quantiser().eval()
    z = vq.embedding[torch.arange(16)].t().reshape(1, 4, 4, 4)  # each code exactly once
    out = vq(z)
    assert torch.isclose(out.perplexity, torch.tensor(16.0)) and out.usage == 1.0


def test_codebook_loss_mode_trains_codebook():
    vq = quantiser(ema=False).train()
    z = torch.randn(1, 4, 4, 4)
    vq(z).loss.backward()
    assert vq.embedding.grad is not None and vq.embedding.grad.abs().sum() > 0
