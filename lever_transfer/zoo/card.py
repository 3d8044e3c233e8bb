"""Model cards for encoder packages: Hub metadata (model-index) plus what a reader needs to know.

The metadata block is built with huggingface_hub's ``ModelCardData``/``EvalResult``, so the Hub
indexes it as RL Zoo's cards: ``pipeline_tag: reinforcement-learning``, the evaluation return in
model-index form on the task's gymnasium environment id (``ALE/Qbert-v5``; DeepMind Control as
shimmy registers it, ``dm_control/walker-stand-v0``), tags without colons, and a citation.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCardData

from ..recipe_files import (
    ATARI_FRAME_SKIP,
    ATARI_FRAME_STACK,
    ATARI_MAX_EPISODE_FRAMES,
    ATARI_NOOP_MAX,
    ATARI_SCREEN_SIZE,
    environment_id,
)
from .config import PackageConfig

PAPER = "https://arxiv.org/abs/2103.02886"
CITATION = """@inproceedings{chen2021improving,
  title     = {Improving Computational Efficiency in Visual Reinforcement Learning via Stored
               Embeddings},
  author    = {Chen, Lili and Lee, Kimin and Srinivas, Aravind and Abbeel, Pieter},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {34},
  year      = {2021},
  note      = {LeVER in its ICLR 2021 submission, "Compute- and Memory-Efficient
               Reinforcement Learning with Latent Experience Replay"},
  eprint    = {2103.02886},
  archivePrefix = {arXiv}
}"""


def _source_line(source: Mapping[str, Any]) -> str:
    if source.get("kind") == "offline":  # lever-transfer pretrain-offline: no task, no reward
        cost = "" if source.get("cpu_s") is None else f", {source['cpu_s'] / 3600:.2f} CPU-hours"
        return (f"{source['algorithm']} for {source['updates']:,} updates of "
                f"{source['batch_size']} on exploratory data of {len(source['tasks'])} DeepMind "
                f"Control tasks, seed {source['seed']}{cost}")
    return (f"{source['algorithm']} on `{source['task']}` for {source['env_steps']:,} env steps "
            f"({source['agent_steps']:,} agent steps, action repeat {source['action_repeat']}), "
            f"seed {source['seed']}")


def model_card(name: str, config: PackageConfig) -> str:
    """README.md of a package: YAML front matter, then a short human description and usage."""
    source, obs = config.source, config.observation
    atari = str(source["task"]).startswith("atari:")
    suite = "atari" if atari else "dm_control"
    evaluation = source.get("eval_return")
    task = str(source["task"]).removeprefix("atari:")
    results = [] if evaluation is None else [EvalResult(
        task_type="reinforcement-learning", task_name="reinforcement-learning",
        dataset_type=environment_id(source["task"]), dataset_name=environment_id(source["task"]),
        metric_type="mean_reward", metric_name="mean_reward",
        metric_value=f"{evaluation:.2f} +/- {source.get('eval_return_std', 0.0):.2f}")]
    data = ModelCardData(
        library_name="lever-transfer", pipeline_tag="reinforcement-learning", model_name=name,
        license="mit",
        tags=["reinforcement-learning", "deep-reinforcement-learning", "pixel-rl", "lever",
              "encoder", suite, task, config.architecture],
        eval_results=results or None,
    )
    layers = "\n".join(f"| {layer.index} | {layer.name} | {layer.output_shape} |"
                       for layer in config.layers)
    kind = "dueling C51 Q heads" if atari else "actor and critic heads"
    heads = (f"Includes the {kind} (`--transfer full` for task transfer)."
             if config.has_heads else "Encoder only (new heads are trained).")
    evaluation_line = ("not evaluated (trained without reward)" if evaluation is None else
                       f"{evaluation:.1f} ± {source.get('eval_return_std', 0.0):.1f} over "
                       f"{source.get('eval_episodes', '?')} episodes "
                       f"({'greedy, epsilon 0.001' if atari else 'centre crop, deterministic'})")
    frozen, target = (len(config.layers), "atari:alien") if atari else (4, "hopper_hop")
    return f"""---
{data.to_yaml()}
---

# {name}

A frozen `{config.architecture}` pixel encoder published by lever-transfer, trained with
{_source_line(source)}. LeVER ([Chen et al.]({PAPER})) freezes such encoders and trains only
the policy and Q heads on latent replay.

- Evaluation return at publish time: {evaluation_line}{_flops_line(source)}
- Wall time: {source.get('wall_s', 0) / 3600:.2f} h{_cpu_time(source)}{_training_precision(source)}
- {heads}
- Weights sha256: `{config.sha256}`{_precision_line(config)}

{_sections(source, config)}## Observations it expects

uint8 `[{obs.channels * obs.frame_stack}, {obs.render_size}, {obs.render_size}]`:
{obs.frame_stack} stacked {obs.channels}-channel frames ({obs.layout}), rendered at
{obs.render_size}x{obs.render_size}, crop: {obs.crop},
{obs.crop_size}x{obs.crop_size} into the encoder, scaled {obs.pixel_scaling}.

| layer | name | output shape |
|---|---|---|
{layers}

## Usage

```python
from lever_transfer import load_encoder

encoder = load_encoder("hub:{name}")   # a frozen torch.nn.Module in eval mode
latent = encoder(obs)                   # obs: uint8 as the task renders it
```

```bash
lever-transfer finetune --from hub:{name} --to {target} --freeze-layers {frozen}
```

## Citation

```bibtex
{CITATION}
```
"""


def _sections(source: Mapping[str, Any], config: PackageConfig) -> str:
    """The card's optional sections: the data, the learning curve and notes, the probe, and for
    an Atari-100k game its score against the benchmark's references and how it was made."""
    return (_data_section(source) + _curve_section(source) + _probe_section(config.probes)
            + _atari_section(source))


def _atari_section(source: Mapping[str, Any]) -> str:
    """An Atari encoder's human-normalised score, the exact preprocessing and the command that
    trains another seed, so a user can compare it with published Atari-100k results."""
    from ..benchmark import references

    task = str(source["task"])
    reference = references().get(task)
    recipe = source.get("recipe") or {}
    if reference is None or not recipe:
        return ""
    text = "## Atari-100k\n\n"
    if source.get("eval_return") is not None:
        score = float(source["eval_return"])
        text += (f"- Score {score:.1f} ({source.get('eval_episodes', '?')} games), "
                 f"human-normalised {reference.normalise(score):.3f}: (score - random) / "
                 f"(human - random) with random {reference.random:g} and human "
                 f"{reference.human:g}. Data-efficient Rainbow (van Hasselt et al. 2019) "
                 f"published {reference.der:g} ({reference.normalise(reference.der):.3f}).\n")
    clip = recipe.get("reward_clip")
    agent_steps = next(iter((recipe.get("steps") or {}).values()), None)  # action repeat 1
    steps = "?" if agent_steps is None else (
        f"{agent_steps:,} agent steps ({ATARI_FRAME_SKIP * agent_steps:,} frames)")
    evals = "".join(f"{v} {k}" for k, v in (recipe.get("eval_every") or {}).items())
    text += (
        f"- Environment: `gymnasium.make(\"{environment_id(task)}\", frameskip=1, "
        "repeat_action_probability=0.0, full_action_space=False, "
        f"max_num_frames_per_episode={ATARI_MAX_EPISODE_FRAMES})`: sticky actions off, the "
        f"minimal action set, the standard {ATARI_MAX_EPISODE_FRAMES // 1000}K-frame game limit.\n"
        f"- Preprocessing: gymnasium's `AtariPreprocessing(noop_max={ATARI_NOOP_MAX}, "
        f"frame_skip={ATARI_FRAME_SKIP}, screen_size={ATARI_SCREEN_SIZE})`: up to "
        f"{ATARI_NOOP_MAX} no-op starts, each action repeated {ATARI_FRAME_SKIP} frames with the "
        f"max of the last two, {ATARI_SCREEN_SIZE}x{ATARI_SCREEN_SIZE} grayscale; "
        f"{recipe.get('frame_stack', ATARI_FRAME_STACK)} frames stacked.\n"
        "- Training: data-efficient Rainbow for " + steps + "; a lost life ends the "
        "training episode (the game goes on)"
        + (f", rewards clipped to [-{clip:g}, {clip:g}]" if clip else "") + ". Evaluation plays "
        "whole games, unclipped, greedy with epsilon "
        f"{(recipe.get('rainbow') or {}).get('eval_epsilon', 0.001):g}. Every setting: "
        "`source.recipe` in config.json.\n"
        f"- Another seed: `lever-transfer pretrain {task} --steps 100k --snapshot-every 100k "
        f"--set \"eval_every={evals or '50000 agent_steps'}\" "
        f"--set eval_episodes={recipe.get('eval_episodes', 10)} --seed N`\n\n")
    return text


def _flops_line(source: Mapping[str, Any]) -> str:
    return "" if source.get("flops") is None else (
        f"\n- FLOPs spent training it: {source['flops']:.3g}")


def _data_section(source: Mapping[str, Any]) -> str:
    """What an offline encoder was trained on (``lever-transfer collect`` datasets)."""
    tasks = source.get("tasks")
    if not tasks:
        return ""
    rows = "\n".join(f"| {task} | {d['episodes']} | {d['frames']:,} | {d['exploration']} | "
                     f"{d['action_repeat']} |" for task, d in tasks.items())
    return ("## Data\n\nExploratory rollouts (`lever-transfer collect`), no reward used; "
            f"objective `{source['objective']}`"
            + (f" (positive {source['temporal_shift']} agent step later)"
               if source["objective"] == "atc" and source.get("temporal_shift") else "")
            + ", batches mixing the tasks evenly.\n\n"
            "| task | episodes | frames | actions | action repeat |\n|---|---|---|---|---|\n"
            f"{rows}\n\n")


def _training_precision(source: Mapping[str, Any]) -> str:
    """How the source run computed (packages from before the precision setting have none)."""
    precision = source.get("precision")
    if precision is None:
        return ""
    what = ("bf16 autocast (float32 weights, optimizer state and targets)" if precision == "bf16"
            else "float32")
    return f"\n- Training precision: {what}"


def _cpu_time(source: Mapping[str, Any]) -> str:
    """The run's CPU-hours beside its wall hours: on a shared machine the wall time overstates
    what the training cost (packages from runs logged before ``cpu_s`` have none)."""
    return "" if source.get("cpu_s") is None else f" ({source['cpu_s'] / 3600:.2f} CPU-hours)"


def _curve_section(source: Mapping[str, Any]) -> str:
    """The pretraining run's evaluations up to this snapshot, and notes on it (e.g. why a
    figure is below the zoo's target), when the package records them."""
    rows = source.get("curve") or []
    text = ""
    if rows:
        with_cpu = any("cpu_s" in row for row in rows)  # runs logged before cpu_s have none
        lines = "\n".join(
            f"| {row['env_steps']:,} | {row['return']:.1f} ± {row.get('return_std') or 0:.1f} | "
            + (f"{row['flops']:.3g}" if row.get("flops") else "-") + " | "
            + (f"{row['wall_s'] / 3600:.2f}" if row.get("wall_s") else "-") + " |"
            + (f" {row['cpu_s'] / 3600:.2f} |" if "cpu_s" in row else " - |" if with_cpu else "")
            for row in rows)
        cpu_head = (" CPU h |", "---|") if with_cpu else ("", "")
        text += ("## Learning curve of the run it comes from\n\n"
                 f"| env steps | return ({source.get('eval_episodes', '?')} episodes) | FLOPs | "
                 f"wall h |{cpu_head[0]}\n|---|---|---|---|{cpu_head[1]}\n{lines}\n\n")
    if source.get("notes"):
        text += f"## Notes\n\n{source['notes']}\n\n"
    return text


def r2_text(value: float | None) -> str:
    """An R² as tables print it: three decimals, ``-`` where it is undefined (a dimension
    constant in the probe's rollouts; recorded as null)."""
    return "-" if value is None or value != value else f"{value:.3f}"


def _probe_section(probes: Sequence[Mapping[str, Any]]) -> str:
    """``lever-transfer probe``'s recorded results: how much of each task's physics state a ridge
    regression reads off the frozen features, beside a random-init encoder's."""
    if not probes:
        return ""
    if len(probes) == 1:
        probe = probes[0]
        rows = "\n".join(f"| {g['name']} | {g['dims']} | {r2_text(g['encoder_r2'])} | "
                         f"{r2_text(g['random_r2'])} |" for g in probe["groups"])
        how = "its own policy" if probe["policy"] else "random actions"
        return (f"## Linear probe\n\n"
                f"Held-out R² of ridge regressions from layer `{probe['layer']}` to "
                f"`{probe['task']}`'s physics state ({probe['steps']} steps: {probe['episodes']} "
                f"episodes of {how} at action repeat {probe['action_repeat']}, seed "
                f"{probe['seed']}; `lever-transfer probe {probe['reference']} --task "
                f"{probe['task']}`): **{r2_text(probe['overall_encoder_r2'])}** overall, "
                f"against {r2_text(probe['overall_random_r2'])} for a randomly initialised "
                f"encoder of the same "
                f"architecture.\n\n| group | dims | this encoder | random init |\n"
                f"|---|---|---|---|\n{rows}\n\n")
    rows = "\n".join(
        f"| {p['task']} | **state (overall)** | | **{r2_text(p['overall_encoder_r2'])}** | "
        f"{r2_text(p['overall_random_r2'])} |\n"
        + "\n".join(f"| | {g['name']} | {g['dims']} | {r2_text(g['encoder_r2'])} | "
                    f"{r2_text(g['random_r2'])} |" for g in p["groups"])
        for p in probes)
    tasks = ",".join(p["task"] for p in probes)
    first = probes[0]
    how = "the package's policy" if any(p["policy"] for p in probes) else "random actions"
    return (f"## Linear probe\n\n"
            f"Held-out R² of ridge regressions from layer `{first['layer']}` to each task's "
            f"physics state ({first['episodes']} episodes of {how} per task at the "
            f"task's action repeat, seed {first['seed']}; `lever-transfer probe "
            f"{first['reference']} --task {tasks}`), beside a randomly initialised encoder of "
            f"the same architecture.\n\n| task | group | dims | this encoder | random init |\n"
            f"|---|---|---|---|---|\n{rows}\n\n")


def _precision_line(config: PackageConfig) -> str:
    """Shipped packages store float16 to keep the checkout small; say so, and where the float32
    weights are."""
    if config.stored_dtype != "float16":
        return ""
    return ("\n- Weights stored as float16 (loaded as float32); the float32 package is the "
            "pretraining run's `packages/` folder (`lever-transfer pretrain` writes it)")
