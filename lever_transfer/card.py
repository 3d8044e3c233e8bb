"""Model cards for encoder packages: Hub metadata (model-index) plus what a reader needs to know.

The metadata block is built with huggingface_hub's ``ModelCardData``/``EvalResult``, so the Hub
shows the evaluation return in its model-index form, exactly as RL Zoo cards do.
"""

from __future__ import annotations

from typing import Any, Mapping

from huggingface_hub import EvalResult, ModelCardData

PAPER = "https://arxiv.org/abs/2007.04938"


def _source_line(source: Mapping[str, Any]) -> str:
    return (f"{source['algorithm']} on `{source['task']}` for {source['env_steps']:,} env steps "
            f"({source['agent_steps']:,} agent steps, action repeat {source['action_repeat']}), "
            f"seed {source['seed']}")


def model_card(name: str, config: Mapping[str, Any]) -> str:
    """README.md of a package: YAML front matter, then a short human description and usage."""
    source, obs = config["source"], config["observation"]
    atari = str(source["task"]).startswith("atari:")
    suite = "atari" if atari else "dm_control"
    evaluation = source.get("eval_return")
    results = [] if evaluation is None else [EvalResult(
        task_type="reinforcement-learning", task_name="reinforcement-learning",
        dataset_type=f"{suite}/{source['task'].removeprefix('atari:')}",
        dataset_name=source["task"],
        metric_type="mean_reward", metric_name="mean_reward",
        metric_value=f"{evaluation:.2f} +/- {source.get('eval_return_std', 0.0):.2f}")]
    data = ModelCardData(
        library_name="lever-transfer", model_name=name, license="mit",
        tags=["reinforcement-learning", "deep-reinforcement-learning", "pixel-rl", "lever",
              "encoder", suite, source["task"], config["architecture"]],
        eval_results=results or None,
    )
    layers = "\n".join(f"| {layer['index']} | {layer['name']} | {tuple(layer['output_shape'])} |"
                       for layer in config["layers"])
    kind = "dueling C51 Q heads" if atari else "actor and critic heads"
    heads = (f"Includes the {kind} (`--transfer full` for task transfer)."
             if "heads" in config["parts"] else "Encoder only (new heads are trained).")
    evaluation_line = ("not evaluated" if evaluation is None else
                       f"{evaluation:.1f} ± {source.get('eval_return_std', 0.0):.1f} over "
                       f"{source.get('eval_episodes', '?')} episodes "
                       f"({'greedy, epsilon 0.001' if atari else 'centre crop, deterministic'})")
    frozen, target = (len(config["layers"]), "atari:alien") if atari else (4, "hopper_hop")
    return f"""---
{data.to_yaml()}
---

# {name}

A frozen `{config['architecture']}` pixel encoder published by lever-transfer, trained with
{_source_line(source)}. LeVER ([Chen et al.]({PAPER})) freezes such encoders and trains only
the policy and Q heads on latent replay.

- Evaluation return at publish time: {evaluation_line}
- FLOPs spent training it: {source.get('flops', 0):.3g}
- Wall time: {source.get('wall_s', 0) / 3600:.2f} h
- {heads}
- Weights sha256: `{config['sha256']}`{_precision_line(config)}

## Observations it expects

uint8 `[{obs['channels'] * obs['frame_stack']}, {obs['render_size']}, {obs['render_size']}]`:
{obs['frame_stack']} stacked {obs['channels']}-channel frames ({obs['layout']}), rendered at
{obs['render_size']}x{obs['render_size']}, crop: {obs['crop']},
{obs['crop_size']}x{obs['crop_size']} into the encoder, scaled {obs['pixel_scaling']}.

| layer | name | output shape |
|---|---|---|
{layers}

## Usage

```python
from lever_transfer import load_encoder

encoder = load_encoder("hub:{name}", freeze_layers={frozen})   # a torch.nn.Module
latent = encoder(obs)                                    # obs: uint8 as the task renders it
```

```bash
lever-transfer finetune --from hub:{name} --to {target} --freeze-layers {frozen}
```
"""


def _precision_line(config: Mapping[str, Any]) -> str:
    """Shipped packages store float16 to keep the checkout small; say so, and where the float32
    weights are."""
    if config.get("stored_dtype") != "float16":
        return ""
    return ("\n- Weights stored as float16 (loaded as float32); the float32 package is the "
            "pretraining run's `packages/` folder (`lever-transfer pretrain` writes it)")
