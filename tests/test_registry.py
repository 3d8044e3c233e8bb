"""Every registered encoder and agent, built, updated once and packaged: none is only a recipe.

The combinations come from the registry (``registry.AGENTS`` and ``registry.ENCODERS``), filtered
by the config's own consistency rules, so a newly registered encoder or algorithm is built,
trained and packaged here without editing this file.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lever_transfer import config as config_module
from lever_transfer.accounting import latent_batch, pixel_batch
from lever_transfer.agents import make_agent
from lever_transfer.augment import center_crop
from lever_transfer.config import is_atari_task, list_recipes, load_config
from lever_transfer.encoders import ImpalaEncoder, make_encoder
from lever_transfer.envs import action_size
from lever_transfer.errors import ConfigError
from lever_transfer.registry import AGENTS, ENCODERS, encoder_class
from lever_transfer.zoo import publishing as zoo
from lever_transfer.zoo.encoder import load_encoder
from lever_transfer.zoo.package import read_package, write_package
from lever_transfer.zoo.transfer import architecture_overrides, load_into_agent

from .test_sac_curl import snapshot


def accepted(key: str) -> tuple[str, ...]:
    """The values config.py accepts for an enum key, read from its own rule."""
    rule = {f.name: f for f in dataclasses.fields(config_module.Config)}[key].metadata["rule"]
    return tuple(ast.literal_eval(part) for part in rule[0].split(" | "))


ALGORITHMS = tuple(AGENTS)
# one task per suite; each agent's registry entry says which suite it plays
SUITE_TASKS = {name: {"dmc": "walker_walk", "atari": "atari:qbert"}[entry.suite]
               for name, entry in AGENTS.items()}
# channels_last off: the agent's encoder then runs the same kernels as a loaded one (a package
# is read back contiguous), so the round trip can be checked bit for bit
SMALL = {"batch_size": 8, "hidden_dim": 32, "num_filters": 8, "channels_last": False,
         "device": "cpu", "seed": 0}


def combinations() -> list[tuple[str, str]]:
    """(algorithm, encoder) pairs the config accepts (its consistency rules decide; a value it
    does not accept at all fails test_config_accepts_exactly_the_registered_encoders)."""
    pairs = []
    for algorithm, encoder in itertools.product(ALGORITHMS, ENCODERS):
        try:
            load_config(SUITE_TASKS[algorithm], {"algorithm": algorithm, "encoder": encoder})
        except (KeyError, ConfigError):
            continue
        pairs.append((algorithm, encoder))
    return pairs


COMBINATIONS = combinations()


def test_config_accepts_exactly_the_registered_encoders_and_agents():
    assert set(accepted("encoder")) == set(ENCODERS)
    assert set(accepted("algorithm")) == set(AGENTS)


def test_every_algorithm_has_a_task_here_and_every_encoder_an_algorithm():
    assert set(SUITE_TASKS) == set(ALGORITHMS), "give a new algorithm a task in SUITE_TASKS"
    assert {encoder for _, encoder in COMBINATIONS} == set(ENCODERS)
    assert {algorithm for algorithm, _ in COMBINATIONS} == set(ALGORITHMS)


def optimized(agent) -> list[nn.Parameter]:
    return [p for opt in agent.optimizers.values() for g in opt.param_groups for p in g["params"]]


def setup(algorithm: str, encoder: str):
    """(config, observation shape, action space) of a small agent of this kind; observations
    are what the environment gives (DMC: render size, the agent crops; Atari: 84x84)."""
    cfg = load_config(SUITE_TASKS[algorithm], {**SMALL, "algorithm": algorithm,
                                               "encoder": encoder})
    if hasattr(cfg.agent, "eval_epsilon"):
        cfg = cfg.replace(eval_epsilon=0.0)  # a greedy policy: the round trip compares actions
    channels = 1 if is_atari_task(cfg.task) else 3
    obs_shape = (channels * cfg.frame_stack, cfg.render_size, cfg.render_size)
    space = (gym.spaces.Discrete(6) if is_atari_task(cfg.task)
             else gym.spaces.Box(-1.0, 1.0, (6,), np.float32))
    return cfg, obs_shape, space


def assert_finite(metrics: dict) -> None:
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
    assert scalars and all(np.isfinite(v) for v in scalars.values()), metrics


@pytest.mark.parametrize("algorithm, encoder", COMBINATIONS,
                         ids=[f"{a}-{e}" for a, e in COMBINATIONS])
def test_agent_is_built_updated_frozen_packaged_and_loaded_back(algorithm, encoder, tmp_path):
    cfg, obs_shape, space = setup(algorithm, encoder)
    agent = make_agent(cfg, obs_shape, space)
    assert type(agent.encoder) is encoder_class(encoder)
    assert agent.encoder.obs_shape == (obs_shape[0], cfg.crop_size, cfg.crop_size)  # 9x84x84
    rng = np.random.default_rng(0)
    names = {id(p): name for name, p in agent.named_parameters()}
    params = {id(p): p for p in agent.parameters()}

    # one pixel update: every parameter an optimizer holds moves, encoder included
    before = {id(p): p.detach().clone() for p in optimized(agent)}
    encoder_ids = {id(p) for p in agent.encoder.parameters()}
    assert [names[i] for i in encoder_ids - set(before)] == []  # all of it trains before Tf
    assert_finite(agent.update(pixel_batch(cfg, obs_shape, space, rng), 0).metrics)
    assert [names[id(p)] for p in optimized(agent) if torch.equal(p, before[id(p)])] == []

    # freeze everything: the stored latent has the shape encode_latents gives
    assert agent.freeze("all") == agent.num_layers and agent.fully_frozen
    networks, feature = agent.latent_spec(agent.num_layers)
    stacks = rng.integers(0, 256, (2, *obs_shape), dtype=np.uint8)
    copies = cfg.latent_augmentations
    assert agent.encode_latents(stacks, copies).shape == (2, copies, networks, *feature)

    # one latent update: the heads move, the frozen encoder does not
    frozen = snapshot(agent.encoder)
    curl = getattr(agent, "curl_w", None)  # CURL trains the encoder: it stops at Tf
    heads = {id(p): p.detach().clone() for p in optimized(agent) if p is not curl}
    assert heads
    assert [names[i] for i in encoder_ids & set(heads)] == []  # frozen: out of the optimizers
    batch = latent_batch(cfg, (networks, *feature), space, rng)
    assert_finite(agent.update(batch, agent.update_period).metrics)
    assert [names[i] for i, old in heads.items() if torch.equal(params[i], old)] == []
    assert all(torch.equal(v, frozen[k]) for k, v in agent.encoder.state_dict().items())

    # packaged as the trainer does, read back by load_encoder: the same latents
    actions = action_size(space)
    config = zoo.package_config(cfg, actions, agent_steps=1, flops=0, eval_return=None,
                                eval_return_std=None, wall_s=0.0, with_heads=True)
    config["frozen_layers"] = agent.frozen_layers
    folder = write_package(tmp_path / "package",
                           agent.package_tensors(agent.state_dict(), agent.num_layers,
                                                 with_heads=True),
                           config)
    assert read_package(folder).config.architecture == encoder
    loaded = load_encoder(str(folder)).eval()
    agent.eval()
    obs = torch.as_tensor(stacks)
    with torch.no_grad():
        expected = agent.encoder(center_crop(obs, cfg.crop_size))
        assert torch.equal(loaded(obs), expected)

    # the whole policy (encoder, actor fc, heads) loads into a fresh agent, as eval does
    fresh_cfg = cfg.replace(**architecture_overrides(read_package(folder)), seed=1,
                            pretrained=str(folder), transfer="full")
    fresh = make_agent(fresh_cfg, obs_shape, space)
    load_into_agent(fresh, read_package(folder), fresh_cfg, actions)
    online = {k: v for k, v in agent.state_dict().items()
              if not k.startswith(("target_", "curl_w"))}
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in online.items())
    np.testing.assert_array_equal(fresh.act(stacks[0], sample=False),
                                  agent.act(stacks[0], sample=False))


# ---------------------------------------------------------------- IMPALA (figure 6(b))

def test_impala_is_fifteen_convs_in_three_residual_stacks_cut_at_block_boundaries():
    """Section 5.3: 3 stacks of (conv + max-pool, 2 residual blocks of 2 convs) = 15 convs, then
    fc + LayerNorm; a residual block is one layer, so 10 layers."""
    encoder = make_encoder("impala", (9, 84, 84))
    assert isinstance(encoder, ImpalaEncoder)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 15 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in encoder.modules()) == 3
    assert encoder.layer_names == [f"stack{s}.{part}" for s in (1, 2, 3)
                                   for part in ("conv", "res1", "res2")] + ["fc"]
    # 84 -> 42 -> 21 -> 11 (3x3 max-pool, stride 2, padding 1), channels 16, 32, 32
    assert encoder.output_shapes() == ([(16, 42, 42)] * 3 + [(32, 21, 21)] * 3
                                       + [(32, 11, 11)] * 3 + [(50,)])
    assert [encoder.resolve_layers(n) for n in (1, 10, "all")] == [1, 10, 10]
    with pytest.raises(ConfigError, match="0..10"):
        encoder.resolve_layers(11)


def test_impala_residual_block_adds_two_relu_convs_to_its_input():
    torch.manual_seed(0)
    encoder = make_encoder("impala", (9, 84, 84))
    block = encoder.layers[1]
    for conv in (block.conv0, block.conv1):
        nn.init.normal_(conv.weight, std=0.1)
        nn.init.normal_(conv.bias, std=0.1)
    x = torch.randn(2, 16, 42, 42)
    by_hand = x + F.conv2d(F.relu(F.conv2d(F.relu(x), block.conv0.weight, block.conv0.bias,
                                            padding=1)),
                           block.conv1.weight, block.conv1.bias, padding=1)
    with torch.no_grad():
        torch.testing.assert_close(block(x), by_hand)
        nn.init.zeros_(block.conv1.weight)
        nn.init.zeros_(block.conv1.bias)
        assert torch.equal(block(x), x)  # a zero residual branch is the identity


def test_the_figure_6b_recipes_build_an_impala_agent():
    recipes = [name for name, _, _ in list_recipes() if load_config(name).encoder == "impala"]
    assert recipes  # walker_walk_impala, cartpole_swingup_impala
    for recipe in recipes:
        cfg = load_config(recipe, {**SMALL})
        assert cfg.paper == "figure 6(b)"
        agent = make_agent(cfg, (9, cfg.render_size, cfg.render_size),
                           gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
        assert isinstance(agent.encoder, ImpalaEncoder) and agent.num_layers == 10
        assert agent.encoder.obs_shape == (9, 84, 84)
