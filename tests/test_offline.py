"""lever-transfer pretrain-offline: the contrastive loss written out by hand, batches mixed across
domains, resuming to the same weights, published packages that finetune and probe take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from lever_transfer.augment import random_crop
from lever_transfer.cli import main
from lever_transfer.collect import Episode, Plan, collect
from lever_transfer.offline import OfflinePretrainer, OfflineSettings, Sampler
from lever_transfer.probe import compare
from lever_transfer.zoo import hub


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Real rollouts of two DMC tasks (the tests that take it are marked slow)."""
    out = tmp_path_factory.mktemp("offline") / "data"
    collect(Plan(("cartpole_swingup", "walker_walk"), 2, 0, "mixed", 10), out,
            say=lambda m: None, progress=False)
    return out


def trainer(data: Path, run: Path, **settings) -> OfflinePretrainer:
    values = {"updates": 4, "batch_size": 8, "snapshot_every": 2, "precision": "fp32",
              "log_every": 1, **settings}
    return OfflinePretrainer(OfflineSettings(data=(str(data),), **values), run,
                             say=lambda m: None)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["atc", "curl"])
def test_the_loss_is_the_contrastive_loss_written_out_by_hand(data, tmp_path, objective):
    t = trainer(data, tmp_path / "run", objective=objective)
    with torch.no_grad():
        t.head.w.add_(0.1 * torch.randn_like(t.head.w))  # a W other than the identity
    anchors, positives = t.sampler.sample(np.random.default_rng(1), 8, 1)
    anchors, positives = torch.as_tensor(anchors), torch.as_tensor(positives)
    state = t.generator.get_state()
    loss, _ = t.loss(anchors, positives)
    t.generator.set_state(state)  # the same crops, by hand
    anchor = random_crop(anchors, 84, t.generator)
    positive = random_crop(positives, 84, t.generator)
    with torch.no_grad():
        z = t.encoder(anchor)
        if objective == "atc":  # the residual predictor; CURL compares z itself
            z = z + t.head.predictor(z)
        z_positive = t.target(positive)
        logits = z @ t.head.w @ z_positive.T
        by_hand = -torch.stack([F.log_softmax(logits[i], 0)[i] for i in range(8)]).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_batches_mix_domains_evenly_and_positives_are_k_steps_on():
    def episode(task: str, length: int, first: int) -> Episode:  # frame i holds first + i
        values = np.arange(first, first + length, dtype=np.uint8)
        frames = np.repeat(values[:, None, None, None], 3, 1)
        return Episode(task, np.broadcast_to(frames, (length, 3, 4, 4)).copy(),
                       np.zeros((length - 1, 1)), np.zeros(length - 1), {})

    sampler = Sampler([episode("a", 50, 0), episode("a", 50, 0), episode("a", 50, 0),
                       episode("b", 20, 100)], shift=3)
    anchors, positives = sampler.sample(np.random.default_rng(0), 2000, 3)
    newest_anchor, newest_positive = anchors[:, 6, 0, 0], positives[:, 6, 0, 0]
    assert np.all(newest_positive == newest_anchor + 3)
    from_b = np.mean(newest_anchor >= 100)
    assert 0.47 <= from_b <= 0.53  # half of every batch from each task, whatever its data size
    assert newest_anchor[newest_anchor >= 100].max() == 116  # b's last anchor: 3 before its end


@pytest.mark.slow
def test_a_stopped_pretraining_resumes_to_the_same_weights(data, tmp_path):
    straight = trainer(data, tmp_path / "straight")
    straight.run()
    first = trainer(data, tmp_path / "stopped", updates=2)
    first.run()
    resumed = trainer(data, tmp_path / "stopped")
    assert resumed.restore() and resumed.step == 2
    resumed.run()
    for key, value in straight.encoder.state_dict().items():
        assert torch.equal(resumed.encoder.state_dict()[key], value), key
    for key, value in straight.head.state_dict().items():
        assert torch.equal(resumed.head.state_dict()[key], value), key


@pytest.mark.slow
def test_pretrain_offline_publishes_packages_that_finetune_and_the_probe_take(
        data, tmp_path, isolated_hub):
    run = tmp_path / "run"
    args = ["pretrain-offline", str(data), "--updates", "4", "--batch-size", "8",
            "--snapshot-every", "2", "--name", "tiny", "--precision", "fp32", "--out", str(run),
            "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(hub.read_index(isolated_hub)) == ["tiny-atc-2", "tiny-atc-4"]
    config = json.loads((isolated_hub / "tiny-atc-4" / "config.json").read_text())
    assert config["parts"] == ["actor_fc", "encoder"] and config["source"]["kind"] == "offline"
    assert config["source"]["tasks"]["walker_walk"]["action_repeat"] == 2
    card = (isolated_hub / "tiny-atc-4" / "README.md").read_text()
    assert "## Data" in card and "| cartpole_swingup | 2 | 22 | mixed | 8 |" in card
    assert "objective `atc` (positive 1 agent step later)" in card
    cpu_hours = config["source"]["cpu_s"] / 3600
    assert f"on exploratory data of 2 DeepMind Control tasks, seed 0, {cpu_hours:.2f} CPU-hours" \
        in card
    more = CliRunner().invoke(main, [*args[:3], "6", *args[4:]])  # --updates 6: resumes
    assert more.exit_code == 0 and "resuming the pretraining" in more.output
    assert "tiny-atc-6" in hub.read_index(isolated_hub)
    other = CliRunner().invoke(main, [*args, "--objective", "curl"])
    assert other.exit_code != 0 and "other objective" in other.output

    finetune = CliRunner().invoke(main, [
        "finetune", "--from", "hub:tiny-atc-6", "--to", "cheetah_run", "--steps",
        "60 agent_steps", "--set", "init_steps=40 agent_steps", "--set", "batch_size=8",
        "--set", "eval_every=1M agent_steps", "--set", "eval_episodes=1", "--set",
        "render_quality=fast", "--out", str(tmp_path / "ft"), "--no-progress"])
    assert finetune.exit_code == 0, finetune.output

    table = compare(["hub:tiny-atc-6", "hub:tiny-atc-2"], ["walker_walk", "cartpole_swingup"],
                    episodes=3, episode_steps=12, precision="fp32")
    assert table.encoders == ("hub:tiny-atc-6", "hub:tiny-atc-2", "random init")
    assert table.action_repeats == {"walker_walk": 2, "cartpole_swingup": 8}  # the data's
    overall = [r for r in table.rows if r[1] == "state (overall)"]
    assert [r[0] for r in overall] == ["walker_walk", "cartpole_swingup"]
    assert all(len(r[3]) == 3 and all(np.isfinite(r[3])) for r in table.rows)
    assert "hub:tiny-atc-2" in table.table().splitlines()[1]


@pytest.mark.slow
@pytest.mark.parametrize("setting, words", [("lr=abc", "lr must be a positive number"),
                                            ("temporal_shift=0", "temporal_shift must be"),
                                            ("lrr=1", "not a setting of pretrain-offline")])
def test_bad_settings_are_refused_in_one_line(data, tmp_path, setting, words):
    result = CliRunner().invoke(main, ["pretrain-offline", str(data), "--set", setting,
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and words in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
