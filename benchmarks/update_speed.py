"""Update cost before and after LeVER's freeze, and replay bytes per transition.

Walker-walk shapes (3 stacked 100x100 RGB frames cropped to 84x84, 6 action dims), the paper's
networks, batch 128 by default. Times one full training step of the agent as the loop pays it:
sampling a batch from a real replay plus ``agent.update``, alternating actor/no-actor steps as
training does. Prints a short table of medians. Optional ``--e2e`` runs a real short
``train`` and reports agent steps per second after Tf.

    python benchmarks/update_speed.py [--batch 128] [--repeats 20] [--threads 2] [--e2e]
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

from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.config import load_config
from lever_transfer.replay import LatentReplay, PixelReplay, convert_to_latent
from lever_transfer.runtime import keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))
from reference_update import reference_update  # noqa: E402

ACTION_DIM = 6
FRAME = (3, 100, 100)


def filled_pixel_replay(entries: int, rng: np.random.Generator) -> PixelReplay:
    replay = PixelReplay(entries, FRAME, 3, ACTION_DIM)
    frames = rng.integers(0, 256, (64, 9, 100, 100), dtype=np.uint8)
    replay.add_reset(frames[0])
    for i in range(1, entries - 1):
        replay.add_step(rng.uniform(-1, 1, ACTION_DIM).astype(np.float32), float(rng.random()),
                        False, frames[i % 64])
    return replay


def time_updates(update, replay: PixelReplay | LatentReplay, batch: int,
                 repeats: int, rng: np.random.Generator) -> tuple[float, float]:
    """(median ms of sample + update, median ms of sampling alone)."""
    for step in range(3):  # warm-up: allocator, first-call overheads
        update(replay.sample(batch, rng), step)
    total, sampling = [], []
    for step in range(repeats):
        start = time.perf_counter()
        sample = replay.sample(batch, rng)
        mid = time.perf_counter()
        update(sample, step)
        end = time.perf_counter()
        total.append((end - start) * 1000)
        sampling.append((mid - start) * 1000)
    return statistics.median(total), statistics.median(sampling)


def end_to_end(render_quality: str) -> dict[str, float]:
    """Agent steps per second of a real walker_walk run (batch 128) in its latent phase."""
    from lever_transfer.metrics import read_metrics
    from lever_transfer.train import Trainer

    cfg = load_config("walker_walk", {"steps": "4000", "init_steps": "250 agent_steps",
                                      "freeze_at": "500 agent_steps", "eval_every": "1M",
                                      "checkpoint_every": "1M", "device": "cpu",
                                      "render_quality": render_quality})
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(cfg, Path(tmp), progress=False, say=lambda s: None).run()
        rows = [r for r in read_metrics(Path(tmp) / "metrics.jsonl") if r["kind"] == "train"]
    wall = {r["agent_steps"]: r["wall_s"] for r in rows}  # one row per 500-step episode
    # episode 1: 250 random steps then pixel updates; Tf at 500; episodes 2-4: latents only
    return {"sps_after_tf": (2000 - 500) / (wall[2000] - wall[500]),
            "update_ms_before_tf_in_run": rows[0]["update_ms"],
            "update_ms_after_tf_in_run": rows[-1]["update_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--e2e", action="store_true",
                        help="also time a real walker_walk run (about 5 minutes)")
    parser.add_argument("--render-quality", default="paper", choices=["paper", "fast"],
                        help="rendering of the --e2e run")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="measure with glibc's default malloc thresholds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory() if not args.no_malloc_tuning else False
    rng = np.random.default_rng(0)
    cfg = load_config("walker_walk", {"batch_size": args.batch, "device": "cpu"})
    agent = SacCurlAgent(cfg, (9, 100, 100), ACTION_DIM)
    pixels = filled_pixel_replay(2 * args.batch + 64, rng)
    pixel_entry = pixels.bytes_per_entry
    reference, _ = time_updates(lambda b, s: reference_update(agent, b, s), pixels, args.batch,
                                max(4, args.repeats // 4), rng)
    before, sample_px = time_updates(agent.update, pixels, args.batch, args.repeats, rng)
    agent.freeze("all")
    latents = convert_to_latent(pixels, lambda s: agent.encode_latents(s, 4), (4, 2, 50),
                                capacity=4096)
    after, sample_lat = time_updates(agent.update, latents, args.batch, args.repeats, rng)
    half = LatentReplay(1, (4, 2, 50), ACTION_DIM, np.dtype("float16")).bytes_per_entry
    figures = {
        "threads": args.threads, "batch": args.batch, "malloc_tuned": tuned,
        "ms_per_update_reference_order": reference,
        "ms_per_update_before_tf": before, "ms_per_update_after_tf": after,
        "speedup": before / after, "ms_sampling_pixels": sample_px, "ms_sampling_latents": sample_lat,
        "bytes_per_transition_pixels": pixel_entry,
        "bytes_per_transition_latents_f32": latents.bytes_per_entry,
        "bytes_per_transition_latents_f16": half,
        "memory_ratio_f32": pixel_entry / latents.bytes_per_entry,
    }
    if args.e2e:
        figures.update(end_to_end(args.render_quality))
    print(f"walker_walk, batch {args.batch}, {args.threads} threads, median of {args.repeats}, "
          f"malloc tuning {'on' if tuned else 'off'}")
    print(f"{'':32}{'before Tf':>12}{'after Tf':>12}{'ratio':>8}")
    print(f"{'ms per update, reference order':32}{reference:12.1f}{'':12}{reference / before:8.2f}"
          "  (reference / ours)")
    print(f"{'ms per update (sample+update)':32}{before:12.1f}{after:12.2f}{before / after:8.1f}")
    print(f"{'  of which sampling (ms)':32}{sample_px:12.2f}{sample_lat:12.2f}")
    print(f"{'bytes per transition':32}{pixel_entry:12d}{latents.bytes_per_entry:12d}"
          f"{pixel_entry / latents.bytes_per_entry:8.1f}")
    print(f"{'  float16 latents':32}{'':12}{half:12d}{pixel_entry / half:8.1f}")
    if args.e2e:
        print(f"{'in a real run: ms per update':32}{figures['update_ms_before_tf_in_run']:12.1f}"
              f"{figures['update_ms_after_tf_in_run']:12.2f}")
        print(f"{'agent steps/s end to end':32}{'':12}{figures['sps_after_tf']:12.1f}"
              f"  ({args.render_quality} rendering)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
