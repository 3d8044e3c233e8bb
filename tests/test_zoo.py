"""Encoder packages, the hub's name resolution, load_encoder and transfer into an agent."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.errors import LeverError
from lever_transfer.zoo import hub
from lever_transfer.zoo import publishing as zoo
from lever_transfer.zoo.card import model_card
from lever_transfer.zoo.encoder import load_encoder
from lever_transfer.zoo.package import (
    CONFIG,
    WEIGHTS,
    PackageError,
    read_package,
    write_package,
)
from lever_transfer.zoo.transfer import load_into_agent

from .conftest import OBS_SHAPE, latent_batch, pixel_batch

ROOT = Path(__file__).resolve().parents[1]


def make_package(small_config, folder: Path, seed: int = 0, action_dim: int = 6,
                 name: str = "walker_walk-1k") -> tuple[Path, SacCurlAgent]:
    cfg = small_config(seed=seed)
    agent = SacCurlAgent(cfg, OBS_SHAPE, action_dim)
    config = zoo.package_config(cfg, action_dim, agent_steps=500, flops=123, eval_return=12.5,
                                eval_return_std=1.0, wall_s=3.0, with_heads=True)
    tensors = agent.package_tensors(agent.state_dict(), agent.num_layers, with_heads=True)
    path = write_package(folder / name, tensors, config, lambda c: model_card(name, c))
    return path, agent


@pytest.fixture
def hubs(tmp_path, isolated_hub, monkeypatch):
    """An empty local hub and an empty shipped zoo, both under tmp_path."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(hub, "shipped_zoo", lambda: shipped)
    return isolated_hub, shipped


def test_publish_resolve_load_round_trip_is_bit_exact(small_config, tmp_path, hubs, caplog):
    path, agent = make_package(small_config, tmp_path / "out")
    zoo.publish(path, "walker_walk-1k", say=lambda m: None)
    with caplog.at_level(logging.INFO, logger="lever_transfer"):
        encoder = load_encoder("hub:walker_walk-1k", freeze_layers=4)
    assert "local hub" in caplog.messages[0] and "sha256" in caplog.messages[0]
    for key, value in agent.critic_encoder.state_dict().items():
        assert torch.equal(encoder.encoder.state_dict()[key], value), key
    assert encoder.frozen_layers == 4 and encoder.observation_spec["render_size"] == 100
    assert encoder.metadata["env_steps"] == 1000 and encoder.metadata["task"] == "walker_walk"
    obs = torch.randint(0, 256, (2, *OBS_SHAPE), dtype=torch.uint8)
    with torch.no_grad():
        expected = agent.critic_encoder(obs[:, :, 8:92, 8:92])
        torch.testing.assert_close(encoder(obs), expected)  # centre crop from the config
    card = (hubs[0] / "walker_walk-1k" / "README.md").read_text()
    assert "model-index" in card and "mean_reward" in card
    assert "library_name: lever-transfer" in card


def _tamper_weights(path: Path) -> None:
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(data))


def _wrong_sha(path: Path) -> None:
    config = json.loads((path / CONFIG).read_text())
    config["sha256"] = "0" * 64
    (path / CONFIG).write_text(json.dumps(config))


def _config_not_matching(path: Path) -> None:
    config = json.loads((path / CONFIG).read_text())
    config["architecture_args"]["num_filters"] = 16
    (path / CONFIG).write_text(json.dumps(config))


def _extra_tensor(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from lever_transfer.zoo.package import sha256_file
    tensors = load_file(str(path / WEIGHTS))
    tensors["encoder.sneaky"] = torch.zeros(3)
    save_file(tensors, str(path / WEIGHTS))
    config = json.loads((path / CONFIG).read_text())
    config["sha256"] = sha256_file(path / WEIGHTS)  # consistent hash, inconsistent content
    (path / CONFIG).write_text(json.dumps(config))


@pytest.mark.parametrize("damage, words", [
    (_tamper_weights, "changed or damaged"),
    (_wrong_sha, "does not match its config"),
    (_config_not_matching, "needs"),
    (_extra_tensor, "extra tensors"),
    (lambda p: (p / WEIGHTS).unlink(), "missing"),
    (lambda p: (p / CONFIG).unlink(), "missing"),
    (lambda p: (p / CONFIG).write_text("{not json"), "not valid JSON"),
])
def test_damaged_packages_give_one_clear_error(small_config, tmp_path, damage, words):
    path, _ = make_package(small_config, tmp_path)
    damage(path)
    with pytest.raises(PackageError) as info:
        read_package(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_index_sha256_is_checked_too(small_config, tmp_path, hubs):
    path, _ = make_package(small_config, tmp_path / "out")
    zoo.publish(path, "walker_walk-1k", say=lambda m: None)
    entries = hub.read_index(hubs[0])
    entries["walker_walk-1k"]["sha256"] = "f" * 64
    hub.write_index(hubs[0], entries)
    with pytest.raises(PackageError, match="the zoo index says"):
        load_encoder("hub:walker_walk-1k")


def test_unknown_and_ambiguous_names(small_config, tmp_path, hubs):
    local, shipped = hubs
    path, _ = make_package(small_config, tmp_path / "a", seed=0)
    other, _ = make_package(small_config, tmp_path / "b", seed=1)
    zoo.publish(path, "walker_walk-1k", local, say=lambda m: None)
    with pytest.raises(LeverError, match="did you mean walker_walk-1k"):
        hub.resolve("hub:walker_walk-2k", say=lambda m: None)
    zoo.publish(other, "walker_walk-1k", shipped, say=lambda m: None)
    with pytest.raises(LeverError, match="ambiguous"):
        hub.resolve("hub:walker_walk-1k", say=lambda m: None)
    sha = read_package(other).config.sha256
    pinned = hub.resolve(f"hub:walker_walk-1k@{sha[:12]}", say=lambda m: None)
    assert pinned.source == "shipped zoo" and pinned.package.config.sha256 == sha
    with pytest.raises(LeverError, match="invalid encoder name"):
        hub.resolve("hub:../../etc", say=lambda m: None)


def test_traversal_in_the_index_is_refused(tmp_path, hubs):
    (hubs[0]).mkdir(parents=True)
    (hubs[0] / "index.yaml").write_text("encoders:\n  ../outside: {sha256: x}\n")
    with pytest.raises(LeverError, match="invalid encoder name"):
        hub.resolve("hub:anything", say=lambda m: None)


@pytest.mark.slow  # a fresh interpreter
def test_load_encoder_imports_neither_dm_control_nor_gymnasium(small_config, tmp_path):
    path, _ = make_package(small_config, tmp_path)
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dm_control", "gymnasium", "mujoco"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from lever_transfer import load_encoder
        enc = load_encoder({str(path)!r}, freeze_layers="all")
        print(tuple(enc(np.zeros((1, 9, 100, 100), np.uint8)).shape))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 50)"


@pytest.mark.parametrize("transfer", ["encoder", "full"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_finetune_trains_exactly_the_unfrozen_layers(small_config, tmp_path, transfer, n):
    path, source = make_package(small_config, tmp_path)
    package = read_package(path)
    action_dim = 6 if transfer == "full" else 4  # domain transfer: another action space
    cfg = small_config(seed=7, pretrained=str(path), transfer=transfer, freeze_layers=n)
    agent = SacCurlAgent(cfg, OBS_SHAPE, action_dim)
    load_into_agent(agent, package, cfg, action_dim)
    agent.freeze(n)
    loaded = {k: v.clone() for k, v in agent.state_dict().items()}
    for key, value in source.critic_encoder.state_dict().items():
        assert torch.equal(loaded[f"critic_encoder.{key}"], value)
    heads_equal = torch.equal(loaded["actor.trunk.0.weight"], source.actor.trunk[0].weight)
    assert heads_equal == (transfer == "full")
    for step in range(4):
        batch = (latent_batch(8, action_dim, seed=step) if n == 5
                 else pixel_batch(8, action_dim, seed=step))
        agent.update(batch, step)
    after = agent.state_dict()
    for i in range(5):
        prefix = f"critic_encoder.layers.{i}."
        same = all(torch.equal(after[k], loaded[k]) for k in after if k.startswith(prefix))
        assert same == (i < n), f"layer {i + 1} with {n} frozen"
    actor_fc_same = all(torch.equal(after[k], loaded[k]) for k in after
                        if k.startswith("actor_encoder.layers.4."))
    assert actor_fc_same == (n == 5)
    assert not torch.equal(after["actor.trunk.0.weight"], loaded["actor.trunk.0.weight"])
    assert not torch.equal(after["critic.q1.0.weight"], loaded["critic.q1.0.weight"])


def test_transfer_refuses_what_does_not_fit(small_config, tmp_path):
    path, _ = make_package(small_config, tmp_path)
    package = read_package(path)
    cfg = small_config(pretrained=str(path), transfer="full")
    with pytest.raises(LeverError, match="same action space: walker_walk has 6 actions"):
        load_into_agent(SacCurlAgent(cfg, OBS_SHAPE, 4), package, cfg, 4)
    cfg = small_config(pretrained=str(path), frame_stack=4)
    with pytest.raises(LeverError, match="frame_stack 3 vs 4"):
        load_into_agent(SacCurlAgent(cfg, (12, 100, 100), 6), package, cfg, 6)


@pytest.mark.slow  # three fresh interpreters
def test_cli_errors_are_one_line(tmp_path, isolated_hub):
    env = {**os.environ, "LEVER_HUB": str(isolated_hub)}
    for args in (["finetune", "--from", "hub:nothing-here", "--to", "hopper_hop"],
                 ["zoo", "show", "nothing-here"],
                 ["finetune", "--from", str(tmp_path), "--to", "hopper_hop"]):
        out = subprocess.run([sys.executable, "-m", "lever_transfer.cli", *args],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr


def test_an_index_entry_without_a_digest_is_listed_once(hubs):
    """An entry with no sha256 (written by hand, or pushed-only) is still listed; the same name
    with the same digest in both hubs is listed once."""
    local, shipped = hubs
    hub.write_index(local, {"handmade": {"repo_id": "org/handmade"},
                            "both": {"sha256": "ab" * 32}})
    hub.write_index(shipped, {"both": {"sha256": "ab" * 32}, "other": {"sha256": "cd" * 32}})
    names = [name for name, _, _ in zoo.entries()]
    assert sorted(names) == ["both", "handmade", "other"]


def test_a_replaced_package_is_recorded_and_a_pin_to_it_says_what_changed(small_config, tmp_path,
                                                                          hubs):
    """Publishing other weights under a name keeps the old digest with a note: hub:NAME is the
    new package, hub:NAME@OLD_DIGEST is one line that says what happened, not a missing file."""
    first, _ = make_package(small_config, tmp_path / "a", seed=0)
    second, _ = make_package(small_config, tmp_path / "b", seed=1)
    zoo.publish(first, "walker_walk-1k", say=lambda m: None)
    old = hub.read_index(hubs[0])["walker_walk-1k"]["sha256"]
    zoo.publish(second, "walker_walk-1k", say=lambda m: None, why="retrained longer")
    entry = hub.read_index(hubs[0])["walker_walk-1k"]
    assert entry["sha256"] != old and entry["replaced"][0]["sha256"] == old
    assert "retrained longer" in entry["replaced"][0]["note"]
    assert hub.resolve("hub:walker_walk-1k", say=lambda m: None).package.config.sha256 == \
        entry["sha256"]
    with pytest.raises(LeverError) as exc:
        hub.resolve(f"hub:walker_walk-1k@{old[:12]}", say=lambda m: None)
    message = str(exc.value)
    assert "\n" not in message and "replaced" in message and "retrained longer" in message
