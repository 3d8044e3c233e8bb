"""One spelling written, four read: an algorithm's settings in its section (what the project
writes), and the flat, dotted and alias spellings that ``config_compat.upgrade_legacy`` rewrites
into it when a recipe, ``--set`` or a written config is read. Each old spelling must give the
same Config as the section does (fast: no torch, except the run-folder round trip)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lever_transfer.config import (
    FIELD_NAMES,
    RETIRED_KEYS,
    Config,
    canonical_key,
    load_config,
    upgrade_legacy,
)
from lever_transfer.errors import ConfigError
from lever_transfer.recipe_files import read_yaml, recipe_names
from lever_transfer.registry import AGENTS
from lever_transfer.settings import field_names

OLD_RUNS = Path(__file__).parent / "data" / "runs-0.1"
ZOO = Path(__file__).parents[1] / "zoo"
# every name an algorithm's setting has or had: its own names and its aliases
OLD_AND_NEW = {name for e in AGENTS.values() for name in (*field_names(e.settings), *e.aliases)}
# one recipe per algorithm, and a value for one of its settings that is not the default
SUITE_RECIPE = {"sac_curl": "walker_walk", "drq": "walker_stand_drq", "rainbow": "qbert"}
CHANGE = {"sac_curl": ("critic_lr", 3e-4), "drq": ("image_pad", 3), "rainbow": ("lr", 3e-4)}
VALUES = {"lr": 5e-4, "target_update_period": 100}  # for the settings Rainbow's aliases name


def section_only(data: dict, algorithm: str) -> bool:
    """Whether a written mapping spells ``algorithm``'s settings only in its section, under
    their current names."""
    own = set(field_names(AGENTS[algorithm].settings))
    return (not any(k in OLD_AND_NEW or "." in str(k) for k in data)
            and set(data) <= {*FIELD_NAMES, *AGENTS}
            and algorithm in data and set(data[algorithm]) <= own)


def test_the_spellings_cannot_collide():
    """upgrade_legacy tells a flat setting from a shared field by name alone."""
    assert not OLD_AND_NEW & set(FIELD_NAMES) and not set(AGENTS) & set(FIELD_NAMES)
    assert not any("." in name for name in (*FIELD_NAMES, *OLD_AND_NEW, *AGENTS))


# ---------------------------------------------------------------- what the project writes

@pytest.mark.parametrize("name, src", recipe_names(), ids=[n for n, _ in recipe_names()])
def test_shipped_recipes_spell_settings_only_in_sections(name, src):
    data = read_yaml(src)
    flat = sorted(k for k in data if k in OLD_AND_NEW or "." in str(k))
    assert not flat, f"{name}: {flat} belong in the algorithm's section"
    for algorithm in set(data) & set(AGENTS):
        assert set(data[algorithm]) <= set(field_names(AGENTS[algorithm].settings)), name


@pytest.mark.parametrize("name", [n for n, _ in recipe_names()])
def test_written_config_round_trips_in_the_section_spelling(name):
    cfg = load_config(name)
    written = yaml.safe_load(cfg.to_yaml())
    assert section_only(written, cfg.algorithm) and [k for k in written if k in AGENTS] == \
        [cfg.algorithm]
    assert upgrade_legacy(written, cfg.algorithm, "written") == written  # nothing to upgrade
    assert Config.from_dict(written) == cfg
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", ["walker_walk-sac_curl", "qbert-rainbow-prioritized"])
def test_an_old_run_folder_is_rewritten_in_the_section_spelling(tmp_path, name):
    """A 0.1 run's flat config.yaml reads as before; written again it holds one section, and
    resume's --set takes every spelling of a setting to the same config."""
    from lever_transfer.run_dir import RunDir

    shutil.copytree(OLD_RUNS / name, tmp_path / name)
    run = RunDir(tmp_path / name)
    old = yaml.safe_load(run.config_path.read_text())
    cfg = run.read_config()
    assert not section_only(old, cfg.algorithm) and cfg == Config.from_dict(old)
    run.write_config(cfg)
    assert section_only(yaml.safe_load(run.config_path.read_text()), cfg.algorithm)
    assert run.read_config() == cfg
    setting, alias = ("lr", "critic_lr") if cfg.algorithm == "rainbow" else ("critic_lr", None)
    spellings = [setting, f"{cfg.algorithm}.{setting}"] + \
        ([alias, f"{cfg.algorithm}.{alias}"] if alias else [])
    got = {key: run.read_config({key: "5e-5"}) for key in spellings}
    assert all(c == cfg.replace(**{setting: 5e-5}) for c in got.values()), got
    assert {canonical_key(cfg, key) for key in spellings} == {setting}


# ---------------------------------------------------------------- --set, every spelling

@pytest.mark.parametrize("algorithm", sorted(AGENTS))
def test_every_set_spelling_gives_the_same_config(algorithm):
    recipe = SUITE_RECIPE[algorithm]
    name, value = CHANGE[algorithm]
    expected = load_config(recipe).replace(**{name: value})
    spellings = [{name: str(value)}, {f"{algorithm}.{name}": str(value)}, {name: value},
                 {algorithm: {name: value}}, {algorithm: {name: str(value)}}]
    for alias, current in AGENTS[algorithm].aliases.items():
        new = VALUES[current]
        other = load_config(recipe).replace(**{current: new})
        for given in ({alias: str(new)}, {f"{algorithm}.{alias}": str(new)},
                      {algorithm: {alias: new}}):
            assert load_config(recipe, given) == other, given
        assert canonical_key(expected, alias) == canonical_key(expected, f"{algorithm}.{alias}") \
            == current
    for given in spellings:
        assert load_config(recipe, given) == expected, given
    assert canonical_key(expected, name) == canonical_key(expected, f"{algorithm}.{name}") == name


def test_flat_set_wins_over_dotted_and_section():
    for given in ({"sac_curl.actor_lr": "1e-4", "actor_lr": "2e-4"},
                  {"actor_lr": "2e-4", "sac_curl.actor_lr": "1e-4"},
                  {"sac_curl": {"actor_lr": "1e-4"}, "actor_lr": "2e-4"}):
        assert load_config("walker_walk", given).agent.actor_lr == 2e-4


def test_set_after_switching_algorithm_means_the_new_one():
    drq = load_config("walker_walk", {"algorithm": "drq"})
    for given in ({"image_pad": "3"}, {"drq.image_pad": "3"}):
        assert load_config("walker_walk", {"algorithm": "drq", **given}) == \
            drq.replace(image_pad=3)
    # a dotted setting of the algorithm left behind is kept in its section, as in a recipe
    assert load_config("walker_walk", {"algorithm": "drq", "sac_curl.critic_lr": "3e-4"}) == drq


@pytest.mark.parametrize("given, words", [
    ({"atoms": "51"}, "'atoms' in --set is a setting of rainbow"),
    ({"foo.bar": "1"}, "unknown section 'foo'"),
    ({"sac_curl.critic_lrr": "1"}, "did you mean 'critic_lr'"),
    ({"batch_sze": "1"}, "did you mean 'batch_size'"),
    ({"compile": "true"}, "unknown override key 'compile'"),  # retired: old files only
])
def test_set_spellings_that_were_errors_still_are(given, words):
    with pytest.raises(ConfigError, match=words):
        load_config("walker_walk", given)


# ---------------------------------------------------------------- recipe files

def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text", [
    "extends: cheetah_run\ncritic_lr: 3.0e-4\n",                        # flat
    "extends: cheetah_run\nsac_curl: {encoder_tau: 0.05}\ncritic_lr: 3.0e-4\n",  # flat + section
])
def test_flat_recipe_settings_equal_the_section(tmp_path, text):
    section = write(tmp_path / "section.yaml",
                    "extends: cheetah_run\nsac_curl: {critic_lr: 3.0e-4}\n")
    assert load_config(write(tmp_path / "old.yaml", text)) == load_config(section)


def test_recipe_aliases_equal_current_names(tmp_path):
    current = load_config(write(tmp_path / "new.yaml", "extends: qbert\nrainbow: {lr: 3.0e-4, "
                                "target_update_period: 100}\n"))
    for text in ("critic_lr: 3.0e-4\ncritic_target_update_freq: 100\n",
                 "rainbow: {critic_lr: 3.0e-4, critic_target_update_freq: 100}\n",
                 "critic_lr: 3.0e-4\nrainbow: {critic_target_update_freq: 100}\n"):
        assert load_config(write(tmp_path / "old.yaml", "extends: qbert\n" + text)) == current


def test_flat_recipe_settings_mean_the_file_s_algorithm(tmp_path):
    """A flat setting belongs to the algorithm of the file it is in, even when a later file or
    --set switches algorithm (it stays in that algorithm's section)."""
    parent = write(tmp_path / "parent.yaml", "extends: walker_walk\ncritic_lr: 2.0e-4\n")
    child = write(tmp_path / "child.yaml", "extends: parent.yaml\nalgorithm: drq\n"
                                           "critic_lr: 5.0e-4\n")
    assert load_config(parent).agent.critic_lr == 2e-4
    assert load_config(child).agent.critic_lr == 5e-4  # drq's
    assert load_config(child, {"algorithm": "sac_curl"}).agent.critic_lr == 2e-4
    assert load_config(parent, {"algorithm": "drq"}).agent.critic_lr == 1e-3  # drq's default


def test_dotted_keys_are_for_the_command_line_only(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe key 'sac_curl.critic_lr'"):
        load_config(write(tmp_path / "r.yaml", "extends: walker_walk\nsac_curl.critic_lr: 1\n"))
    with pytest.raises(ConfigError, match="unknown config key 'sac_curl.critic_lr'"):
        Config.from_dict({**Config().to_dict(), "sac_curl.critic_lr": 1e-4})


# ---------------------------------------------------------------- configs earlier versions wrote

OLD_CONFIGS = {name: yaml.safe_load((OLD_RUNS / name / "config.yaml").read_text())
               for name in ("walker_walk-sac_curl", "qbert-rainbow-prioritized")}
OLD_CONFIGS.update({f"zoo/{p.parent.name}": source["recipe"]  # encoders trained offline have none
                    for p in sorted(ZOO.glob("*/config.json"))
                    if "recipe" in (source := json.loads(p.read_text())["source"])})


@pytest.mark.parametrize("name", sorted(OLD_CONFIGS))
def test_a_written_old_config_reads_as_its_section_spelling(name):
    """0.1's flat config.yaml and the recipes shipped packages record: the same Config as the
    mapping upgrade_legacy makes of them, which holds only the section spelling."""
    old = OLD_CONFIGS[name]
    algorithm = old.get("algorithm", "sac_curl")
    upgraded = upgrade_legacy(old, algorithm, "written")
    assert section_only(upgraded, algorithm) and not RETIRED_KEYS & set(upgraded)
    assert Config.from_dict(old) == Config.from_dict(upgraded)
    cfg = Config.from_dict(old)
    assert Config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_an_old_flat_rainbow_config_keeps_its_values_under_current_names():
    old = OLD_CONFIGS["qbert-rainbow-prioritized"]
    upgraded = upgrade_legacy(old, "rainbow", "written")
    section = upgraded["rainbow"]
    assert section["lr"] == old["critic_lr"] and "critic_lr" not in section
    assert section["target_update_period"] == old["critic_target_update_freq"]
    assert section["prioritized_replay"] is True and "actor_lr" not in upgraded  # SAC's: dropped


def test_upgrade_legacy_rules():
    # flat wins over the section; aliases inside a section are renamed; unknown keys stay
    raw = {"batch_size": 8, "critic_lr": 1.0, "rainbow": {"critic_lr": 2.0, "zz": 3}, "yy": 4}
    assert upgrade_legacy(raw, "rainbow", "recipe") == {
        "batch_size": 8, "rainbow": {"lr": 1.0, "zz": 3}, "yy": 4}
    # another algorithm's flat setting: left for the reader to refuse, dropped from old files
    assert upgrade_legacy({"atoms": 5}, "sac_curl", "recipe") == {"atoms": 5}
    assert upgrade_legacy({"atoms": 5, "compile": True}, "sac_curl", "written") == {}
    # dotted keys are nested on the command line only; the input is never changed
    given = {"sac_curl": {"actor_lr": "1"}, "sac_curl.critic_lr": "2"}
    assert upgrade_legacy(given, "sac_curl", "--set") == {
        "sac_curl": {"actor_lr": "1", "critic_lr": "2"}}
    assert given == {"sac_curl": {"actor_lr": "1"}, "sac_curl.critic_lr": "2"}
    assert upgrade_legacy({"sac_curl.critic_lr": 1}, "sac_curl", "recipe") == \
        {"sac_curl.critic_lr": 1}
    # a section that is no mapping is left for the reader's error
    assert upgrade_legacy({"sac_curl": 3, "critic_lr": 1}, "sac_curl", "recipe") == \
        {"sac_curl": 3}
