"""SAC+CURL with LeVER: what freezing must and must not do."""

from __future__ import annotations

import pytest
import torch

from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.flops import FlopCounter

from .conftest import OBS_SHAPE, latent_batch, pixel_batch

ACTION_DIM = 6


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def encoder_modules(agent: SacCurlAgent) -> list[torch.nn.Module]:
    return [m for enc in (agent.critic_encoder, agent.actor_encoder, agent.target_encoder)
            for m in enc.modules()]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_frozen_layers_stay_bit_identical_and_get_no_gradients(small_config, n):
    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    agent.freeze(n)
    frozen = [agent.critic_encoder.layers[i] for i in range(n)]
    before = [snapshot(layer) for layer in frozen]
    trainable_before = snapshot(agent.critic_encoder.layers[n]) if n < 5 else None
    for step in range(6):
        agent.update(pixel_batch(8, ACTION_DIM, seed=step), step)
    for layer, old in zip(frozen, before):
        for key, value in layer.state_dict().items():
            assert torch.equal(value, old[key]), key
        assert all(p.grad is None and not p.requires_grad for p in layer.parameters())
        assert not layer.training
    if trainable_before is not None:  # the first unfrozen layer did learn
        changed = [not torch.equal(v, trainable_before[k])
                   for k, v in agent.critic_encoder.layers[n].state_dict().items()]
        assert any(changed)
    frozen_ids = {id(p) for layer in frozen for p in layer.parameters()}
    for opt in agent.optimizers.values():
        for group in opt.param_groups:
            assert not frozen_ids & {id(p) for p in group["params"]}
        assert not frozen_ids & {id(p) for p in opt.state}


def test_actor_convs_are_the_critic_convs(small_config):
    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    for i in range(agent.num_shared):
        assert agent.actor_encoder.layers[i] is agent.critic_encoder.layers[i]
    assert agent.actor_encoder.layers[-1] is not agent.critic_encoder.layers[-1]


def test_after_tf_an_update_calls_no_encoder_layer(small_config):
    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    agent.update(pixel_batch(8, ACTION_DIM), 0)
    agent.freeze("all")
    calls = []
    handles = [m.register_forward_hook(lambda *a: calls.append(1)) for m in encoder_modules(agent)]
    heads_before = snapshot(agent.critic)
    for step in range(4):
        metrics = agent.update(latent_batch(8, ACTION_DIM, seed=step), step).metrics
    for h in handles:
        h.remove()
    assert calls == []
    assert "curl_loss" not in metrics
    assert any(not torch.equal(v, heads_before[k]) for k, v in agent.critic.state_dict().items())


def test_full_freeze_hard_copies_the_target_critic(small_config):
    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    for step in range(3):
        agent.update(pixel_batch(8, ACTION_DIM, seed=step), step)
    agent.freeze("all")
    for k, v in agent.critic.state_dict().items():
        assert torch.equal(v, agent.target_critic.state_dict()[k])


def test_lever_update_costs_far_fewer_flops(small_config):
    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    with FlopCounter() as pixels:
        agent.update(pixel_batch(8, ACTION_DIM), 0)
    agent.freeze("all")
    with FlopCounter() as latents:
        agent.update(latent_batch(8, ACTION_DIM), 0)
    assert pixels.total > 50 * latents.total


def test_encode_latents_shape_and_determinism(small_config):
    """K crops drawn from the agent's generator: the same generator state gives the same latents,
    another state other crops, and each copy is both encoders applied to one real 84x84 window
    of its stack."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    from lever_transfer.augment import random_crop

    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    agent.freeze("all")
    stacks = pixel_batch(3, ACTION_DIM).obs
    state = agent.generator.get_state()
    latents = agent.encode_latents(stacks, augmentations=4)
    assert latents.shape == (3, 4, 2, 50) and latents.dtype.name == "float32"
    agent.generator.set_state(state)
    np.testing.assert_array_equal(agent.encode_latents(stacks, augmentations=4), latents)
    assert not np.array_equal(agent.encode_latents(stacks, augmentations=4), latents)  # moved on
    # the crops that generator state draws, one [3, 9, 84, 84] batch per copy
    replayed = torch.Generator().set_state(state)
    crops = [random_crop(torch.as_tensor(stacks), 84, replayed) for _ in range(4)]
    windows = sliding_window_view(stacks, (84, 84), axis=(2, 3))  # [3, 9, 17, 17, 84, 84]
    for i in range(3):
        offsets = set()
        for k, crop in enumerate(crops):
            match = np.all(windows[i] == crop[i].numpy()[:, None, None], axis=(0, 3, 4))
            assert match.any(), f"copy {k} of stack {i} is not a window of the stack"
            offsets.add(tuple(np.argwhere(match)[0]))
        assert len(offsets) > 1  # the K copies are different windows
    with torch.no_grad():
        expected = torch.stack([torch.stack([agent.critic_encoder(c), agent.actor_encoder(c)], 1)
                                for c in crops], 1)  # [3, K, N=2, 50]
    assert not torch.allclose(expected[:, :, 0], expected[:, :, 1])  # two networks' latents
    torch.testing.assert_close(torch.from_numpy(latents), expected, rtol=1e-5, atol=1e-5)


def test_state_round_trip_gives_identical_updates(small_config):
    a = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    for step in range(3):
        a.update(pixel_batch(8, ACTION_DIM, seed=step), step)
    a.freeze("all")
    state = a.export_state()
    b = SacCurlAgent(small_config(seed=7), OBS_SHAPE, ACTION_DIM)
    b.import_state(state)
    torch.manual_seed(0)
    ma = a.update(latent_batch(8, ACTION_DIM), 4)
    torch.manual_seed(0)
    mb = b.update(latent_batch(8, ACTION_DIM), 4)
    assert ma == mb


def test_converted_latents_are_the_frozen_encoder_applied_to_the_stored_pixels(small_config):
    """Without cropping (crop = render size) and K = 1, conversion is deterministic: every
    stored latent must equal the frozen critic and actor encoders applied to the stored stack."""
    import numpy as np

    from lever_transfer.replay import PixelReplay, convert_to_latent

    agent = SacCurlAgent(small_config(crop_size=100), OBS_SHAPE, ACTION_DIM)
    agent.freeze("all")
    replay = PixelReplay(20, (3, 100, 100), 3, ACTION_DIM, block_items=4)
    rng = np.random.default_rng(0)
    replay.add_reset(rng.integers(0, 256, OBS_SHAPE, dtype=np.uint8))
    for _ in range(12):
        replay.add_step(np.zeros(ACTION_DIM, np.float32), 0.0, False,
                        rng.integers(0, 256, OBS_SHAPE, dtype=np.uint8))
    ids = replay.entries_to_convert()
    stacks = torch.as_tensor(replay.stacks(ids))
    with torch.no_grad():
        expected = torch.stack([agent.critic_encoder(stacks), agent.actor_encoder(stacks)], dim=1)
    latent = convert_to_latent(replay, lambda s: agent.encode_latents(s, 1), (1, 2, 50), 40)
    stored = torch.as_tensor(latent.latents.get(np.arange(len(ids))))[:, 0]
    torch.testing.assert_close(stored, expected, rtol=1e-5, atol=1e-5)
    assert len(latent) == 12


def test_a_resumed_agent_takes_its_learning_rates_from_the_config(small_config):
    """Adam's moments come from the checkpoint, its learning rate from the (changed) config:
    torch's load_state_dict alone would bring the saved rate back."""
    agent = SacCurlAgent(small_config(), OBS_SHAPE, ACTION_DIM)
    agent.update(pixel_batch(8, ACTION_DIM), 0)
    state = agent.export_state()
    lowered = SacCurlAgent(small_config(critic_lr=1e-5, alpha_lr=2e-5), OBS_SHAPE, ACTION_DIM)
    lowered.import_state(state)
    critic_group = lowered.critic_opt.param_groups[0]
    assert critic_group["lr"] == 1e-5 and lowered.alpha_opt.param_groups[0]["lr"] == 2e-5
    assert lowered.critic_opt.param_groups[1]["lr"] == agent.critic_opt.param_groups[1]["lr"]
    moments = [lowered.critic_opt.state[p]["exp_avg"] for p in critic_group["params"]]
    saved = [agent.critic_opt.state[p]["exp_avg"]
             for p in agent.critic_opt.param_groups[0]["params"]]
    assert all(torch.equal(a, b) for a, b in zip(moments, saved))
