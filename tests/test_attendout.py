"""AttendOut's maths (addrop_fairseq.attendout_maths): G-Net's shapes and its one shared parameter
set, the Gumbel sampling frequencies, Eq. 5's gradient against a slow per-element REINFORCE
loop, the moving-average baseline and the re-initialisation probability."""
import math

import pytest
import torch

from addrop_fairseq import attendout_maths as ao


def tokens_and_real(bsz=3, length=7, vocab=20, pad=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab, (bsz, length), generator=g)
    real = torch.ones(bsz, length, dtype=torch.bool)
    for b in range(bsz):
        n = length - b
        tokens[b, n:] = pad
        real[b, n:] = False
    return tokens, real


def test_gnet_shapes_and_one_parameter_set_for_all_layers():
    torch.manual_seed(0)
    small, big = ao.GNet(20, 2, dim=16), ao.GNet(20, 6, dim=16)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in big.parameters())
    tokens, real = tokens_and_real()
    logits = big(tokens, real)
    assert len(logits) == 6 and all(lg.shape == (3, 7, 7) for lg in logits)
    # every layer is the same block: changing its query weights changes every layer's logits
    before = [lg.detach().clone() for lg in logits]
    with torch.no_grad():
        big.query.weight.add_(0.5)
    after = big(tokens, real)
    assert all(not torch.allclose(a, b) for a, b in zip(after, before))
    # and the stack is the block applied again: layer 2 of a 6-layer net == layer 2 of a 3-layer one with the same weights
    three = ao.GNet(20, 3, dim=16)
    three.load_state_dict(big.state_dict())
    torch.testing.assert_close(three(tokens, real)[2], after[2])
    # the bias starts the drop probability at init_rate
    assert math.isclose(torch.sigmoid(ao.GNet(20, 1, init_rate=0.25).bias).item(), 0.25, rel_tol=1e-6)


def test_padding_keys_do_not_change_the_real_positions_logits():
    torch.manual_seed(0)
    net = ao.GNet(20, 3, dim=16)
    tokens, real = tokens_and_real(bsz=1, length=5)
    longer = torch.cat([tokens, torch.full((1, 3), 1)], dim=1)
    longer_real = torch.cat([real, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    a, b = net(tokens, real), net(longer, longer_real)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y[:, :5, :5])


def test_gumbel_sampling_drops_with_probability_sigmoid_of_the_logit():
    logits = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])[:, None].expand(5, 40_000)
    valid = torch.ones_like(logits, dtype=torch.bool)
    drops = ao.sample_drops(logits, valid, torch.Generator().manual_seed(0))
    freq = drops.float().mean(1)
    torch.testing.assert_close(freq, torch.sigmoid(logits[:, 0]), atol=0.01, rtol=0)
    valid[:, ::2] = False
    assert not (ao.sample_drops(logits, valid, torch.Generator().manual_seed(1)) & ~valid).any()


def test_eq5_gradient_equals_a_slow_per_element_reinforce_loop():
    torch.manual_seed(0)
    logits = [torch.randn(3, 4, 4, requires_grad=True), torch.randn(3, 4, 4, requires_grad=True)]
    valid = [torch.rand(3, 4, 4) < 0.8 for _ in logits]
    drops = [ao.sample_drops(lg, v, torch.Generator().manual_seed(i)) for i, (lg, v) in enumerate(zip(logits, valid))]
    rewards, baseline = torch.tensor([0.5, -1.0, 2.0]), 0.3
    ll = ao.action_log_likelihood(logits, drops, valid)
    ao.reinforce_loss(ll, rewards, baseline).backward()
    # slow: d/dl of -(r_t - b) * (1/N_t) * sum log P(d | l) is -(r_t - b)/N_t * (d - sigmoid(l)) per valid element
    for lg, d, v in zip(logits, drops, valid):
        want = torch.zeros_like(lg)
        for t in range(3):
            n_t = sum(float(vv[t].sum()) for vv in valid)
            for i in range(4):
                for j in range(4):
                    if v[t, i, j]:
                        s = 1.0 / (1.0 + math.exp(-float(lg[t, i, j])))
                        want[t, i, j] = -(float(rewards[t]) - baseline) / n_t * (float(d[t, i, j]) - s)
        torch.testing.assert_close(lg.grad, want, atol=1e-6, rtol=1e-5)


def test_moving_average_baseline():
    b = ao.MovingAverage(0.9)
    assert b.update(torch.tensor([1.0, 3.0])) == 2.0  # the first mean
    assert math.isclose(b.update(torch.tensor([4.0])), 0.9 * 2.0 + 0.1 * 4.0)
    c = ao.MovingAverage()
    c.load_state_dict(b.state_dict())
    assert c.update(torch.tensor([0.0])) == b.update(torch.tensor([0.0]))
    with pytest.raises(ValueError):
        ao.MovingAverage(1.0)


def test_the_better_net_is_likelier_to_seed_the_next_round():
    assert ao.attacker_probability(0.8, 0.8) == 0.5
    assert ao.attacker_probability(0.9, 0.7, temperature=0.1) > 0.85
    assert ao.attacker_probability(0.7, 0.9, temperature=0.1) < 0.15
