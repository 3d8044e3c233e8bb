"""Update cost before and after LeVER's freeze, and replay bytes per transition.

DMC: walker-walk shapes (3 stacked 100x100 RGB frames cropped to 84x84, 6 action dims), SAC+CURL
and DrQ, batch 128 by default. Atari: Qbert shapes (4 stacked 84x84 grayscale frames, 6 actions),
data-efficient Rainbow with 20-step returns, batch 32. Times one full training step of the agent
as the loop pays it: sampling a batch from a real replay plus ``agent.update``. Prints a short
table of medians per suite. Optional ``--e2e`` runs real short ``train`` runs and reports agent
steps per second (DMC: after Tf; Atari: before and after Tf, and the implied 100K-step time).

    python benchmarks/update_speed.py [--suite dmc|atari|both] [--batch 128] [--repeats 20]
                                      [--threads 2] [--e2e] [--device cpu|cuda]
                                      [--bf16 auto|always|never]

bf16 is timed where the hardware multiplies it natively (``--bf16 auto``): elsewhere torch
emulates it, about 9x slower than float32 per SAC+CURL update on an AVX2-only CPU, which would
make this benchmark take most of an hour to say only that (``--bf16 always`` times it anyway).

On a GPU (``--device cuda``) the official update order and the convolution profile, which are
CPU measurements, are left out, and every timed update ends with a synchronisation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lever_transfer.agents.drq import DrQAgent
from lever_transfer.agents.rainbow import RainbowAgent
from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.config import load_config
from lever_transfer.precision import cpu_flags, native_bf16
from lever_transfer.replay import LatentReplay, PixelReplay, convert_to_latent
from lever_transfer.runtime import keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))
from reference_update import reference_update  # noqa: E402

ACTION_DIM = 6
NOT_TIMED = (float("nan"), float("nan"))  # bf16 where it is not timed: "-" in the table
FRAME = (3, 100, 100)


def filled_pixel_replay(entries: int, rng: np.random.Generator) -> PixelReplay:
    replay = PixelReplay(entries, FRAME, 3, ACTION_DIM)
    frames = rng.integers(0, 256, (64, 9, 100, 100), dtype=np.uint8)
    replay.add_reset(frames[0])
    for i in range(1, entries - 1):
        replay.add_step(rng.uniform(-1, 1, ACTION_DIM).astype(np.float32), float(rng.random()),
                        False, frames[i % 64])
    return replay


def filled_atari_replay(entries: int, rng: np.random.Generator, n_step: int,
                        gamma: float) -> PixelReplay:
    """Single 84x84 frames, 4-stacks rebuilt on sampling, episodes of 500 steps."""
    replay = PixelReplay(entries, (1, 84, 84), 4, 1, n_step=n_step, gamma=gamma)
    frames = rng.integers(0, 256, (64, 4, 84, 84), dtype=np.uint8)
    replay.add_reset(frames[0])
    for i in range(1, entries - 1):
        if i % 500 == 0:
            replay.add_reset(frames[i % 64])
        else:
            replay.add_step(np.array([i % 6], np.float32), float(rng.random() < 0.1), False,
                            frames[i % 64])
    return replay


def synchronize() -> None:
    """Wait for queued GPU work, so a timer measures it (nothing to wait for on a CPU)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_updates(update, replay: PixelReplay | LatentReplay, batch: int,
                 repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """(median ms of sample + update, median ms of sampling alone)."""
    for step in range(3):  # warm-up: allocator, first-call overheads
        update(replay.sample(batch, rng), step)
    total, sampling = [], []
    for step in range(repeats):
        synchronize()
        start = time.perf_counter()
        sample = replay.sample(batch, rng)
        mid = time.perf_counter()
        update(sample, step)
        synchronize()
        end = time.perf_counter()
        total.append((end - start) * 1000)
        sampling.append((mid - start) * 1000)
    return statistics.median(total), statistics.median(sampling)


def convolution_ms(update, replay: PixelReplay, batch: int, rng: np.random.Generator,
                   repeats: int = 4) -> tuple[float, float]:
    """(ms per update inside convolutions, forward and backward; ms of everything), profiled.

    The convolutions run near this CPU's arithmetic peak, so their share bounds what any
    reordering of the same math can save."""
    from torch.profiler import profile

    for step in range(2):
        update(replay.sample(batch, rng), step)
    with profile() as prof:
        for step in range(repeats):
            update(replay.sample(batch, rng), step)
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events
               if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward"))
    total = sum(e.self_cpu_time_total for e in events)
    return conv / repeats / 1000, total / repeats / 1000


def end_to_end(render_quality: str, device: str) -> dict[str, float]:
    """Agent steps per second of a real walker_walk run (batch 128) in its latent phase."""
    from lever_transfer.metrics import read_metrics
    from lever_transfer.train import Trainer

    cfg = load_config("walker_walk", {"steps": "4000", "init_steps": "250 agent_steps",
                                      "freeze_at": "500 agent_steps", "eval_every": "1M",
                                      "checkpoint_every": "1M", "device": device,
                                      "render_quality": render_quality})
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(cfg, Path(tmp), progress=False, say=lambda s: None).run()
        rows = [r for r in read_metrics(Path(tmp) / "metrics.jsonl") if r["kind"] == "train"]
    wall = {r["agent_steps"]: r["wall_s"] for r in rows}  # one row per 500-step episode
    # episode 1: 250 random steps then pixel updates; Tf at 500; episodes 2-4: latents only
    return {"sps_after_tf": (2000 - 500) / (wall[2000] - wall[500]),
            "update_ms_before_tf_in_run": rows[0]["update_ms"],
            "update_ms_after_tf_in_run": rows[-1]["update_ms"]}


def atari_end_to_end(device: str) -> dict[str, float]:
    """Agent steps per second of a real atari:qbert run (batch 32), before and after Tf."""
    from lever_transfer.metrics import read_metrics
    from lever_transfer.train import Trainer

    cfg = load_config("atari:qbert", {"steps": "8000 agent_steps", "freeze_at": "4000 agent_steps",
                                      "eval_every": "1M agent_steps", "eval_episodes": 1,
                                      "checkpoint_every": "1M agent_steps", "device": device})
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(cfg, Path(tmp), progress=False, say=lambda s: None).run()
        rows = [r for r in read_metrics(Path(tmp) / "metrics.jsonl")
                if r["kind"] in ("train", "freeze")]
    freeze = next(r for r in rows if r["kind"] == "freeze")
    trains = [r for r in rows if r["kind"] == "train"]
    learning = next(r for r in trains if r["agent_steps"] >= 2000)  # updates started at 1600
    last_pixel = [r for r in trains if r["agent_steps"] < 4000][-1]
    first_latent = next(r for r in trains if r["agent_steps"] > 4000 + 500)
    last = trains[-2]  # the final row also holds the end-of-run evaluation
    before = (last_pixel["agent_steps"] - learning["agent_steps"]) / (
        last_pixel["wall_s"] - learning["wall_s"])
    after = (last["agent_steps"] - first_latent["agent_steps"]) / (
        last["wall_s"] - first_latent["wall_s"])
    return {"atari_sps_before_tf": before, "atari_sps_after_tf": after,
            "atari_conversion_s_per_1k": freeze["conversion_s"] / 4,
            "atari_minutes_for_100k_tf_50k": (50_000 / before + 50_000 / after) / 60}


def atari(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    """Rainbow update medians at batch 32 before and after Tf in float32 and bf16, and bytes per
    transition."""
    repeats = 5 * args.repeats
    runs = {p: rainbow_updates(args, rng, p, repeats) for p in precisions(args)}
    times = {p: (run[0], run[1]) for p, run in runs.items()}
    times.setdefault("bf16", NOT_TIMED)
    _, _, sample_px, sample_lat, pixel_entry, latent_entry, batch = runs["fp32"]
    (before, after), (bf16_before, bf16_after) = times["fp32"], times["bf16"]
    figures = {"atari_ms_per_update_before_tf": before, "atari_ms_per_update_after_tf": after,
               "atari_bf16_ms_per_update_before_tf": bf16_before,
               "atari_bf16_ms_per_update_after_tf": bf16_after,
               "atari_speedup": before / after, "atari_ms_sampling_pixels": sample_px,
               "atari_ms_sampling_latents": sample_lat,
               "atari_bytes_per_transition_pixels": pixel_entry,
               "atari_bytes_per_transition_latents": latent_entry}
    if args.e2e:
        figures.update(atari_end_to_end(args.device))
    print(f"atari:qbert (data-efficient Rainbow), batch {batch}, {where(args)}, "
          f"median of {repeats}")
    print_precision_table([("Rainbow, ms per update", times["fp32"], times["bf16"])])
    print(f"{'':32}{'before Tf':>12}{'after Tf':>12}{'ratio':>8}")
    print(f"{'  of which sampling (ms)':32}{sample_px:12.2f}{sample_lat:12.2f}")
    print(f"{'bytes per transition':32}{pixel_entry:12d}{latent_entry:12d}"
          f"{pixel_entry / latent_entry:8.1f}")
    if args.e2e:
        print(f"{'agent steps/s end to end (fp32)':32}{figures['atari_sps_before_tf']:12.1f}"
              f"{figures['atari_sps_after_tf']:12.1f}")
        print(f"{'minutes for 100K steps, Tf 50K':32}{'':12}"
              f"{figures['atari_minutes_for_100k_tf_50k']:12.1f}")
    print()
    return figures


def rainbow_updates(args: argparse.Namespace, rng: np.random.Generator, precision: str,
                    repeats: int) -> tuple[float, float, float, float, int, int, int]:
    """Rainbow's (ms before Tf, after, sampling ms of each, bytes per pixel and latent entry,
    batch) in ``precision``."""
    cfg = load_config("atari:qbert", {"device": args.device, "precision": precision})
    torch.manual_seed(0)
    agent = RainbowAgent(cfg, (4, 84, 84), 6, args.device)
    pixels = filled_atari_replay(20_000, rng, agent.n_step, cfg.discount)
    before, sample_px = time_updates(agent.update, pixels, cfg.batch_size, repeats, rng)
    agent.freeze("all")
    latents = convert_to_latent(pixels, lambda s: agent.encode_latents(s, 1), (1, 1, 64, 3, 3),
                                capacity=20_000)
    after, sample_lat = time_updates(agent.update, latents, cfg.batch_size, repeats, rng)
    return (before, after, sample_px, sample_lat, pixels.bytes_per_entry,
            latents.bytes_per_entry, cfg.batch_size)


def precisions(args: argparse.Namespace) -> tuple[str, ...]:
    """float32 always; bf16 as ``--bf16`` says (auto: where the hardware multiplies it)."""
    timed = args.bf16 == "always" or (
        args.bf16 == "auto" and native_bf16(torch.device(args.device)) is not None)
    return ("fp32", "bf16") if timed else ("fp32",)


def cell(value: float, width: int, digits: int) -> str:
    """A figure right-aligned in ``width``; ``-`` where it was not measured (NaN)."""
    return f"{'-':>{width}}" if value != value else f"{value:{width}.{digits}f}"


def print_precision_table(rows: list[tuple[str, tuple[float, float], tuple[float, float]]]
                          ) -> None:
    """ms per update before and after Tf, float32 and bf16 side by side, with their ratios."""
    print(f"{'':30}{'fp32 before':>12}{'bf16 before':>12}{'ratio':>7}"
          f"{'fp32 after':>12}{'bf16 after':>12}{'ratio':>7}")
    for label, (before, after), (bf16_before, bf16_after) in rows:
        print(f"{label:30}{before:12.1f}{cell(bf16_before, 12, 1)}"
              f"{cell(before / bf16_before, 7, 2)}{after:12.2f}{cell(bf16_after, 12, 2)}"
              f"{cell(after / bf16_after, 7, 2)}")
    if any(bf16 != bf16 for *_, (bf16, _) in rows):
        print("  bf16: not timed, no native bf16 here (--bf16 always times torch's emulation)")


def cpu_description() -> str:
    """The CPU's model name and the features that decide bf16's speed (precision.py)."""
    model = next((line.partition(":")[2].strip() for line in
                  Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
                  if line.startswith("model name")), "unknown CPU") \
        if Path("/proc/cpuinfo").is_file() else "unknown CPU"
    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    native = native_bf16(torch.device("cpu"))
    return (f"{model}; {' '.join(shown) or 'no AVX2'}; torch capability "
            f"{torch.backends.cpu.get_cpu_capability()}; precision auto -> "
            f"{'bf16 (' + native + ')' if native else 'fp32'}")


def drq_updates(args: argparse.Namespace, rng: np.random.Generator,
                precision: str = "fp32") -> tuple[float, float]:
    """DrQ's update medians before and after Tf on the same walker_walk shapes (its shifts of
    the 84 window around the centre of the 100 render; K = M = 2 as its code)."""
    cfg = load_config("walker_walk", {"algorithm": "drq", "batch_size": args.batch,
                                      "device": args.device, "precision": precision})
    agent = DrQAgent(cfg, (9, 100, 100), ACTION_DIM, args.device)
    pixels = filled_pixel_replay(2 * args.batch + 64, rng)
    before = time_updates(agent.update, pixels, args.batch, args.repeats, rng)[0]
    agent.freeze("all")
    latents = convert_to_latent(pixels, lambda s: agent.encode_latents(s, 4), (4, 2, 50),
                                capacity=4096)
    return before, time_updates(agent.update, latents, args.batch, args.repeats, rng)[0]


def where(args: argparse.Namespace) -> str:
    """What the figures were measured on: CPU threads, or the GPU's name."""
    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(args.device))
    return f"{args.threads} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["dmc", "atari", "both"], default="both")
    parser.add_argument("--batch", type=int, default=128, help="DMC batch (Atari: table 5's 32)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--e2e", action="store_true",
                        help="also time real short runs (about 5 minutes each)")
    parser.add_argument("--render-quality", default="paper", choices=["paper", "fast"],
                        help="rendering of the --e2e run")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU's figures")
    parser.add_argument("--bf16", choices=["auto", "always", "never"], default="auto",
                        help="time bf16 too: auto = where the hardware multiplies it natively")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="measure with glibc's default malloc thresholds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory() if not args.no_malloc_tuning else False
    rng = np.random.default_rng(0)
    figures: dict[str, float | str] = {"threads": args.threads, "malloc_tuned": tuned,
                                       "device": where(args), "cpu": cpu_description()}
    print(f"CPU: {figures['cpu']}\n")
    if args.suite in ("dmc", "both"):
        figures.update(dmc(args, rng, tuned))
    if args.suite in ("atari", "both"):
        figures.update(atari(args, rng))
    if args.json:
        measured = {k: None if isinstance(v, float) and v != v else v  # NaN: not measured
                    for k, v in figures.items()}
        args.json.write_text(json.dumps(measured, indent=2))


def curl_updates(args: argparse.Namespace, rng: np.random.Generator, precision: str
                 ) -> tuple[SacCurlAgent, PixelReplay, float, float, float, float]:
    """(agent frozen, pixel replay, ms before Tf, ms after, sampling ms of each) of SAC+CURL."""
    cfg = load_config("walker_walk", {"batch_size": args.batch, "device": args.device,
                                      "precision": precision})
    torch.manual_seed(0)
    agent = SacCurlAgent(cfg, (9, 100, 100), ACTION_DIM, args.device)
    pixels = filled_pixel_replay(2 * args.batch + 64, rng)
    before, sample_px = time_updates(agent.update, pixels, args.batch, args.repeats, rng)
    agent.freeze("all")
    latents = convert_to_latent(pixels, lambda s: agent.encode_latents(s, 4), (4, 2, 50),
                                capacity=4096)
    after, sample_lat = time_updates(agent.update, latents, args.batch, args.repeats, rng)
    return agent, pixels, before, after, sample_px, sample_lat


def dmc(args: argparse.Namespace, rng: np.random.Generator, tuned: bool) -> dict[str, float]:
    """SAC+CURL and DrQ update medians before and after Tf in float32 and bf16, the official
    CURL update order (float32) in the same run, and bytes per transition."""
    cfg = load_config("walker_walk", {"batch_size": args.batch, "device": args.device,
                                      "precision": "fp32"})
    torch.manual_seed(0)
    agent = SacCurlAgent(cfg, (9, 100, 100), ACTION_DIM, args.device)
    pixels = filled_pixel_replay(2 * args.batch + 64, rng)
    on_cpu = agent.device.type == "cpu"
    nan = float("nan")
    reference = time_updates(lambda b, s: reference_update(agent, b, s), pixels, args.batch,
                             max(4, args.repeats // 4), rng)[0] if on_cpu else nan
    conv_reference = convolution_ms(lambda b, s: reference_update(agent, b, s), pixels,
                                    args.batch, rng)[0] if on_cpu else nan
    conv_ours = convolution_ms(agent.update, pixels, args.batch, rng)[0] if on_cpu else nan
    curl = {p: curl_updates(args, rng, p) for p in precisions(args)}
    drq = {p: drq_updates(args, rng, p) for p in precisions(args)}
    drq.setdefault("bf16", NOT_TIMED)
    _, pixels, before, after, sample_px, sample_lat = curl["fp32"]
    bf16_before, bf16_after = (curl["bf16"][2], curl["bf16"][3]) if "bf16" in curl else NOT_TIMED
    pixel_entry = pixels.bytes_per_entry
    latent_entry = LatentReplay(1, (4, 2, 50), ACTION_DIM, np.dtype("float32")).bytes_per_entry
    half = LatentReplay(1, (4, 2, 50), ACTION_DIM, np.dtype("float16")).bytes_per_entry
    figures = {
        "drq_ms_per_update_before_tf": drq["fp32"][0], "drq_ms_per_update_after_tf": drq["fp32"][1],
        "drq_bf16_ms_per_update_before_tf": drq["bf16"][0],
        "drq_bf16_ms_per_update_after_tf": drq["bf16"][1],
        "batch": args.batch,
        "ms_per_update_reference_order": reference,
        "ms_per_update_before_tf": before, "ms_per_update_after_tf": after,
        "bf16_ms_per_update_before_tf": bf16_before, "bf16_ms_per_update_after_tf": bf16_after,
        "conv_ms_reference_order": conv_reference, "conv_ms_before_tf": conv_ours,
        "speedup": before / after, "ms_sampling_pixels": sample_px,
        "ms_sampling_latents": sample_lat,
        "bytes_per_transition_pixels": pixel_entry,
        "bytes_per_transition_latents_f32": latent_entry,
        "bytes_per_transition_latents_f16": half,
        "memory_ratio_f32": pixel_entry / latent_entry,
    }
    if args.e2e:
        figures.update(end_to_end(args.render_quality, args.device))
    print(f"walker_walk, batch {args.batch}, {where(args)}, median of {args.repeats}, "
          f"malloc tuning {'on' if tuned else 'off'}")
    print_precision_table([("SAC+CURL, ms per update", (before, after), (bf16_before, bf16_after)),
                           ("DrQ (K=M=2), ms per update", drq["fp32"], drq["bf16"])])
    bf16_ratio = "not timed" if bf16_before != bf16_before else f"{reference / bf16_before:.2f}x"
    print(f"{'official CURL order (fp32), ms':30}{reference:12.1f}   reference / ours: fp32 "
          f"{reference / before:.2f}x, bf16 {bf16_ratio}")
    print(f"{'':32}{'before Tf':>12}{'after Tf':>12}{'ratio':>8}")
    print(f"{'fp32 speedup of the freeze':32}{before:12.1f}{after:12.2f}{before / after:8.1f}")
    print(f"{'  of which sampling (ms)':32}{sample_px:12.2f}{sample_lat:12.2f}")
    print(f"{'ms in convs, reference order':32}{conv_reference:12.1f}{'':12}"
          f"{conv_reference / conv_ours:8.2f}  (profiled, forward + backward, fp32)")
    print(f"{'ms in convs, ours':32}{conv_ours:12.1f}")
    print(f"{'bytes per transition':32}{pixel_entry:12d}{latent_entry:12d}"
          f"{pixel_entry / latent_entry:8.1f}")
    print(f"{'  float16 latents':32}{'':12}{half:12d}{pixel_entry / half:8.1f}")
    if args.e2e:
        print(f"{'in a real run: ms per update':32}{figures['update_ms_before_tf_in_run']:12.1f}"
              f"{figures['update_ms_after_tf_in_run']:12.2f}")
        print(f"{'agent steps/s end to end':32}{'':12}{figures['sps_after_tf']:12.1f}"
              f"  ({args.render_quality} rendering)")
    print()
    return figures


if __name__ == "__main__":
    sys.exit(main())
