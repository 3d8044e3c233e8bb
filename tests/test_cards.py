"""Model cards the Hub can index: the shipped cards are what card.py writes, parse with
huggingface_hub, and name gymnasium environment ids.

After changing card.py, regenerate the shipped cards (the weights and their sha256 stay):
    python -c "from pathlib import Path; from lever_transfer.zoo.publishing import \
rewrite_shipped_cards; \
rewrite_shipped_cards(Path('zoo'))"
"""

from __future__ import annotations

from pathlib import Path

import gymnasium
import pytest
from dm_control import suite
from huggingface_hub import ModelCard

from lever_transfer.recipe_files import environment_id
from lever_transfer.zoo.card import model_card
from lever_transfer.zoo.hub import read_index, shipped_zoo
from lever_transfer.zoo.package import CARD, read_package

SHIPPED = sorted(read_index(shipped_zoo()))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_are_what_the_code_writes_and_the_hub_parses(name):
    folder = Path(shipped_zoo()) / name
    package = read_package(folder)
    text = (folder / CARD).read_text(encoding="utf-8")
    assert text == model_card(name, package.config)
    card = ModelCard(text)  # huggingface_hub's parser, metadata validated
    data = card.data
    assert data.library_name == "lever-transfer" and data.pipeline_tag == "reinforcement-learning"
    assert data.tags and not any(":" in tag for tag in data.tags)
    if package.config.source.get("eval_return") is None:  # trained offline, without reward
        assert data.eval_results is None and "not evaluated (trained without reward)" in text
    else:
        result = data.eval_results[0]
        env_id = environment_id(package.config.source["task"])
        assert result.dataset_type == env_id and result.metric_type == "mean_reward"
    assert "@inproceedings{chen2021improving" in card.text and "2103.02886" in card.text


def test_dm_control_ids_are_shimmys_for_every_task():
    for domain, task in suite.ALL_TASKS:
        assert environment_id(f"{domain}_{task}") == f"dm_control/{domain}-{task}-v0"


@pytest.mark.parametrize("task", ["atari:qbert", "atari:bank_heist", "atari:up_n_down",
                                  "atari:ms_pacman", "Qbert", "atari:private_eye"])
def test_atari_ids_are_registered_gymnasium_ids(task):
    import ale_py

    gymnasium.register_envs(ale_py)
    assert environment_id(task) in gymnasium.registry


@pytest.mark.parametrize("name", [n for n, e in read_index(shipped_zoo()).items()
                                  if not str(e["source_task"]).startswith("atari:")])
def test_every_shipped_dmc_encoder_has_its_probe_recorded(name):
    """``lever-transfer probe hub:NAME --task walker_walk --record`` was run for each: its card
    and ``zoo list`` show the figure."""
    probes = read_package(Path(shipped_zoo()) / name).config.probes
    probe = {p["task"]: p for p in probes}["walker_walk"]
    assert probe["steps"] == 1000 and not probe["policy"]
    assert probe["overall_encoder_r2"] > probe["overall_random_r2"] + 0.1
    mean = sum(p["overall_encoder_r2"] for p in probes) / len(probes)
    assert read_index(shipped_zoo())[name]["probe"]["r2"] == pytest.approx(mean, abs=1e-4)


@pytest.mark.parametrize("name", [n for n, e in read_index(shipped_zoo()).items()
                                  if str(e["source_task"]).startswith("atari:")])
def test_an_atari_card_gives_its_human_normalised_score_and_the_preprocessing_the_env_uses(name):
    """The card's HNS is (score - random) / (human - random) from data/atari100k.csv, and the
    preprocessing it states is what ``envs.atari`` builds (its constants: no copy to drift)."""
    from lever_transfer.benchmark import references
    from lever_transfer.envs import atari

    config = read_package(Path(shipped_zoo()) / name).config
    text = model_card(name, config)
    ref = references()[config.source["task"]]
    score = config.source["eval_return"]
    assert f"human-normalised {(score - ref.random) / (ref.human - ref.random):.3f}" in text
    assert f"published {ref.der:g}" in text
    assert (f"noop_max={atari.NOOP_MAX}, frame_skip={atari.FRAME_SKIP}, "
            f"screen_size={atari.SCREEN_SIZE})") in text
    assert f"max_num_frames_per_episode={atari.MAX_EPISODE_FRAMES})" in text
    assert f"{atari.FRAME_STACK} frames stacked" in text
    assert f"lever-transfer pretrain {config.source['task']} --steps 100k" in text
