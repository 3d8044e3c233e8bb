"""Update cost of a finetune (N encoder layers frozen from step 0) against training from scratch.

Walker-walk shapes, the paper's networks, batch 128, one training step as the loop pays it
(sample + ``agent.update``). N = 0 is training from scratch (CURL); N = 1..4 keep pixels and run
the frozen convs without gradients (their outputs are larger than the pixels); N = all (5)
replays latents, as ``lever-transfer finetune --freeze-layers all`` does.

    python benchmarks/finetune_speed.py [--batch 128] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from update_speed import ACTION_DIM, filled_pixel_replay, time_updates

from lever_transfer.agents.sac_curl import SacCurlAgent
from lever_transfer.config import load_config
from lever_transfer.replay import convert_to_latent
from lever_transfer.runtime import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    rng = np.random.default_rng(0)
    pixels = filled_pixel_replay(2 * args.batch + 64, rng)
    rows = []
    for frozen in (0, 1, 2, 3, 4, 5):
        cfg = load_config("walker_walk", {"batch_size": args.batch, "device": "cpu"})
        agent = SacCurlAgent(cfg, (9, 100, 100), ACTION_DIM)
        agent.freeze(frozen)
        replay = pixels
        if frozen == 5:
            replay = convert_to_latent(filled_pixel_replay(2 * args.batch + 64, rng),
                                       lambda s, a=agent: a.encode_latents(s, 4), (4, 2, 50), 4096)
        ms, _ = time_updates(agent.update, replay, args.batch, args.repeats, rng)
        rows.append((frozen, ms))
    scratch = rows[0][1]
    print(f"walker_walk, batch {args.batch}, {args.threads} threads, median of {args.repeats}")
    print(f"{'frozen layers':>14}{'replay':>9}{'ms/update':>11}{'vs scratch':>12}")
    for frozen, ms in rows:
        label = "0 (scratch)" if frozen == 0 else ("all (5)" if frozen == 5 else str(frozen))
        print(f"{label:>14}{'latents' if frozen == 5 else 'pixels':>9}{ms:11.1f}"
              f"{scratch / ms:11.1f}x")


if __name__ == "__main__":
    sys.exit(main())
