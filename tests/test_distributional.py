"""Rainbow's math against small hand-computed cases (issue 4 groundwork)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lever_transfer.agents.distributional import (
    DuelingC51Head,
    project_distribution,
)


def test_c51_projection_by_hand():
    support = torch.tensor([-1.0, 0.0, 1.0])
    probs = torch.tensor([[0.2, 0.3, 0.5]] * 3)
    out = project_distribution(probs, torch.tensor([0.5, 5.0, -0.25]),
                               torch.tensor([0.5, 0.5, 0.0]), support)
    # row 0: Tz = [0, .5, 1] -> .2 on atom 1; .3 split .15/.15 over atoms 1, 2; .5 on atom 2
    # row 1: clamped to v_max; row 2: terminal, everything at -0.25 = .25 on -1, .75 on 0
    expected = torch.tensor([[0.0, 0.35, 0.65], [0.0, 0.0, 1.0], [0.25, 0.75, 0.0]])
    assert torch.allclose(out, expected)


@settings(max_examples=50, deadline=None)
@given(ret=st.floats(-30, 30), discount=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_projection_keeps_mass_and_mean_inside_the_support(ret, discount, seed):
    support = torch.linspace(-10, 10, 51)
    probs = torch.softmax(torch.randn(1, 51, generator=torch.Generator().manual_seed(seed)), 1)
    out = project_distribution(probs, torch.tensor([ret]), torch.tensor([discount]), support)
    assert torch.all(out >= 0) and torch.allclose(out.sum(), torch.tensor(1.0), atol=1e-5)
    exact = (ret + discount * (probs * support).sum()).clamp(-10, 10)
    if -10 <= ret - 10 * discount and ret + 10 * discount <= 10:  # nothing clamped: mean kept
        assert torch.allclose((out * support).sum(), exact, atol=1e-4)


def test_dueling_head_is_a_distribution_and_noisy_only_in_training():
    torch.manual_seed(0)
    head = DuelingC51Head(576, actions=6)
    latent = torch.randn(4, 64, 3, 3)
    log_probs = head(latent)
    assert log_probs.shape == (4, 6, 51)
    assert torch.allclose(log_probs.exp().sum(2), torch.ones(4, 6), atol=1e-5)
    head.reset_noise()
    assert not torch.allclose(head(latent), log_probs)  # new noise, new output
    head.eval()
    mean_1 = head(latent)
    head.reset_noise()
    assert torch.equal(head(latent), mean_1)  # evaluation uses the mean weights
