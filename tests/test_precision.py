"""Mixed precision: ``auto`` picks bf16 only where the hardware multiplies it natively; a bf16
update keeps every parameter, optimizer moment and target network float32 and computes losses
close to float32's; a run resumes under the other precision and records each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from lever_transfer.agents.drq import DrQAgent
from lever_transfer.agents.rainbow import RainbowAgent
from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.cli import main
from lever_transfer.config import ConfigError, load_config
from lever_transfer.metrics import read_metrics
from lever_transfer.precision import cpu_flags, native_bf16, resolve_precision
from lever_transfer.replay import PixelBatch

from .conftest import OBS_SHAPE, as_sets, make_small_config, pixel_batch, tiny_schedule

CPU = torch.device("cpu")
# Relative gap between a bf16 and a float32 update's reported losses on the same batch and
# weights: at most 0.5% measured (SAC+CURL, DrQ and Rainbow, seeds 0-4, batch 32), 4x margin;
# figures near 0 (Rainbow's mean Q at initialisation, about 1e-3) are compared to 0.05's gap.
LOSS_TOLERANCE, NEAR_ZERO = 0.02, 0.05


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, "fp32"),                                 # AMD EPYC, AVX2 only
    ({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "fp32"),  # Intel AVX-512, no bf16
    ({"avx512f", "avx512_bf16"}, "bf16"),                      # AMD Zen 4: AVX512-BF16
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16"),  # Intel with AMX
])
def test_auto_is_bf16_only_with_native_bf16_arithmetic(flags, expected):
    assert resolve_precision("auto", CPU, flags).name == expected
    assert resolve_precision("fp32", CPU, flags).name == "fp32"  # asked for: as asked
    assert resolve_precision("bf16", CPU, flags).name == "bf16"


def test_the_reason_says_what_was_found():
    assert "AMX-BF16" in resolve_precision("auto", CPU, {"amx_bf16"}).reason
    assert "no AMX-BF16 or AVX512-BF16" in resolve_precision("auto", CPU, {"avx2"}).reason
    assert "slower than fp32" in resolve_precision("bf16", CPU, {"avx2"}).reason
    assert native_bf16(CPU, set()) is None


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16\n"
                    "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_a_bad_precision_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="precision"):
        load_config("walker_walk", {"precision": "fp16"})


def atari_batch(batch: int, seed: int = 0) -> PixelBatch:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (2, batch, 4, 84, 84), dtype=np.uint8)
    return PixelBatch(obs=frames[0], next_obs=frames[1],
                      action=rng.integers(0, 6, (batch, 1)).astype(np.float32),
                      reward=rng.choice([0.0, 1.0], batch).astype(np.float32),
                      discount=np.full(batch, 0.99 ** 20, np.float32))


def build(kind: str, precision: str, seed: int):
    """(agent, a batch) of an algorithm in ``precision``, equal weights for equal seeds."""
    torch.manual_seed(seed)
    if kind == "rainbow":
        cfg = load_config("atari:qbert", {"device": "cpu", "precision": precision,
                                          "seed": seed, "batch_size": 32})
        return RainbowAgent(cfg, (4, 84, 84), 6), atari_batch(32, seed)
    extra = {"algorithm": "drq"} if kind == "drq" else {}
    cfg = make_small_config(seed=seed, precision=precision, batch_size=32, **extra)
    agent_class = DrQAgent if kind == "drq" else SacCurlAgent
    return agent_class(cfg, OBS_SHAPE, 6), pixel_batch(32, 6, seed)


@pytest.mark.parametrize("kind", ["sac_curl", "drq", "rainbow"])
def test_bf16_updates_keep_weights_moments_and_targets_float32(kind):
    agent, batch = build(kind, "bf16", 0)
    assert agent.precision == "bf16"
    for step in range(3):  # step 0 and 2 update the actor, every step the targets (SAC)
        agent.update(batch, step)
    for name, tensor in agent.state_dict().items():  # targets included
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32, name
    for name, optimizer in agent.optimizers.items():
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and value.is_floating_point():
                    assert value.dtype == torch.float32, (name, key)
    latents = agent.encode_latents(batch.obs[:2], 1)
    assert latents.dtype == np.float32  # the latent replay stores what it stored before


@pytest.mark.parametrize("kind", ["sac_curl", "drq", "rainbow"])
def test_a_bf16_update_reports_losses_close_to_float32s(kind):
    reports = {}
    for precision in ("fp32", "bf16"):
        agent, batch = build(kind, precision, 0)
        reports[precision] = agent.update(batch, 0).metrics
    fp32, bf16 = reports["fp32"], reports["bf16"]
    assert fp32.keys() == bf16.keys()
    for key in fp32:
        assert abs(bf16[key] - fp32[key]) <= LOSS_TOLERANCE * max(abs(fp32[key]), NEAR_ZERO), key
    assert any(bf16[k] != fp32[k] for k in fp32)  # the bf16 update did run in bf16


@pytest.mark.parametrize("architecture", ["curl", "impala"])
def test_the_latent_is_float32_under_bf16_autocast(architecture):
    """The encoder's fc + LayerNorm run in float32 (walker_stand learned worse with a bf16
    latent): the latent CURL contrasts, the heads read and the replay stores keeps float32's
    precision, while the convolutions below it run in bf16."""
    from lever_transfer.encoders import make_encoder

    torch.manual_seed(0)
    encoder = make_encoder(architecture, (9, 84, 84), 50, 32, 4)
    x = torch.randint(0, 256, (4, 9, 84, 84), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        latent, below = encoder(x), encoder(x, 0, encoder.num_layers - 1)
    assert latent.dtype == torch.float32 and below.dtype == torch.bfloat16
    head = encoder.layers[-1]
    assert torch.equal(latent, head(below.float()))  # the head itself computed in float32
    assert torch.allclose(latent, encoder(x), atol=0.1)  # close to the all-float32 latent


def test_losses_and_log_probabilities_are_float32_under_autocast():
    agent, batch = build("sac_curl", "bf16", 0)
    z = torch.randn(4, agent.cfg.feature_dim)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, pi, log_pi = agent.actor(z)
        q1, q2 = agent.critic(z, pi)
    assert log_pi is not None and log_pi.dtype == torch.float32 and mu.dtype == torch.float32
    assert q1.dtype == q2.dtype == torch.float32


@pytest.mark.parametrize("kind", ["sac_curl", "rainbow"])
def test_head_outputs_keep_float32_precision_under_autocast(kind):
    """Q values and atom logits come from float32 output layers: bf16 keeps 8 significant bits,
    so a Q value near 50 would move in steps of 0.25, about one reward, and quantise the TD error.
    The hidden layers below still run in bf16."""
    agent, _ = build(kind, "bf16", 0)
    streams = ([agent.critic.q1, agent.critic.q2, agent.actor.trunk] if kind == "sac_curl" else
               [agent.head.value, agent.head.advantage])
    for stream in streams:
        bias = stream[-1].bias if kind == "sac_curl" else stream[-1].bias_mu
        with torch.no_grad():
            bias.add_(50.0)
        x = torch.randn(16, stream[0].in_features)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out, hidden = stream(x), torch.nn.Sequential(*list(stream)[:-1])(x)
        assert hidden.dtype == torch.bfloat16 and out.dtype == torch.float32
        with torch.no_grad():
            assert torch.equal(out, stream[-1](hidden.float()))  # the output layer in float32
        assert not torch.equal(out, out.bfloat16().float())  # finer than bf16's grid near 50


# Frozen at 100 agent steps, so the bf16 part updates latents only: cheap where a CPU without
# AVX512-BF16 or AMX emulates bf16 (pixel updates in bf16: test_bf16_updates_keep_weights_...).
TINY_RUN = ["--steps", "150 agent_steps",
            *as_sets(tiny_schedule(eval_every="1M agent_steps", checkpoint_every="100 agent_steps",
                                   batch_size=8), leave_out=("steps",)),
            "--no-progress"]


@pytest.mark.slow
def test_a_run_records_its_precision_and_resumes_in_the_other(tmp_path):
    run = tmp_path / "run"
    first = CliRunner().invoke(main, ["train", "walker_walk", "--precision", "fp32",
                                      "--out", str(run), *TINY_RUN])
    assert first.exit_code == 0, first.output
    assert "precision fp32 (asked for)" in first.output  # the run header
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "fp32"
    second = CliRunner().invoke(main, ["resume", str(run), "--set", "precision=bf16",
                                       "--set", "steps=250 agent_steps", "--no-progress"])
    assert second.exit_code == 0, second.output
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "bf16"
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert {r["precision"] for r in rows if r["agent_steps"] <= 150} == {"fp32"}
    assert {r["precision"] for r in rows if r["agent_steps"] > 150} == {"bf16"}
    assert rows[-1]["agent_steps"] == 250 and np.isfinite(rows[-1]["critic_loss"])
