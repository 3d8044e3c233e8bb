"""lever-transfer eval: a run's latest checkpoint or a zoo package, and a playable video."""

from __future__ import annotations

import imageio.v3 as iio
import pytest
from click.testing import CliRunner
from PIL import Image

from lever_transfer.cli import main
from lever_transfer.config import load_config
from lever_transfer.errors import LeverError
from lever_transfer.evaluate import load_policy, write_video
from lever_transfer.train import Trainer

from .conftest import tiny_schedule

TINY = tiny_schedule("atari:qbert", steps="200 agent_steps", freeze_at="150 agent_steps")


@pytest.fixture(scope="module")
def qbert_run(tmp_path_factory):
    """A real run of 200 agent steps (the tests that take it are marked slow)."""
    run = tmp_path_factory.mktemp("qbert")
    Trainer(load_config("atari:qbert", TINY), run, progress=False, say=lambda s: None).run()
    return run


@pytest.mark.slow
def test_eval_of_a_run_prints_mean_and_std_and_writes_a_playable_gif(qbert_run, tmp_path):
    video = tmp_path / "episode.gif"
    result = CliRunner().invoke(main, ["eval", str(qbert_run), "--episodes", "2",
                                       "--video", str(video)])
    assert result.exit_code == 0, result.output
    assert "atari:qbert: return" in result.output and "over 2 episodes" in result.output
    frames = int(result.output.split("(")[-1].split(" frames")[0])
    with Image.open(video) as gif:
        assert gif.format == "GIF" and gif.size == (160, 210)  # the ALE screen, width x height
        assert 10 < gif.n_frames <= frames  # reset frame + one per step (repeats merged)


@pytest.mark.slow
def test_eval_writes_a_playable_mp4(qbert_run, tmp_path):
    video = tmp_path / "episode.mp4"
    result = CliRunner().invoke(main, ["eval", str(qbert_run), "--episodes", "1",
                                       "--video", str(video)])
    assert result.exit_code == 0, result.output
    frames = iio.imread(video, plugin="FFMPEG")  # decodes: a real H.264 stream
    assert frames.shape[1:] == (210, 160, 3) and len(frames) > 10  # not rescaled
    assert iio.immeta(video, plugin="FFMPEG")["codec"] == "h264"


@pytest.mark.slow
def test_the_policy_is_the_checkpointed_one(qbert_run):
    from lever_transfer.checkpoint import load_checkpoint
    from lever_transfer.run_dir import RunDir

    cfg, agent, what = load_policy(str(qbert_run))
    _, state = load_checkpoint(RunDir(qbert_run).latest_checkpoint())
    assert what.endswith("ckpt-0000000200") and cfg.task == "atari:qbert"
    assert agent.fully_frozen  # frozen at Tf = 150, as the run was
    for key, value in agent.state_dict().items():
        assert (value == state["agent"]["modules"][key]).all(), key


def test_bad_sources_and_videos_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    with pytest.raises(LeverError, match="must end in .gif or .mp4"):
        write_video([Image.new("RGB", (4, 4))], tmp_path / "video.avi")
