"""What every command shares: the ``lever-transfer`` group, one-line errors, the options
several commands take, and turning a recipe and flags into a checked config."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import LeverError

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


# optional dependencies -> the extras that install them (pyproject.toml)


EXTRAS = {"dm_control": ("dmc",), "mujoco": ("dmc",), "ale_py": ("atari",), "cv2": ("atari",),
          "matplotlib": ("plots",), "stable_baselines3": ("sb3",), "gymnasium": ("dmc", "atari")}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line fix for a command that needs an extra the core install lacks."""
    extras = EXTRAS.get((exc.name or "").split(".")[0])
    if extras is None:
        return None
    installs = " or ".join(f"'lever-transfer[{extra}]'" for extra in extras)
    return (f"this command needs {exc.name}, which the core install leaves out: "
            f"pip install {installs} (or 'lever-transfer[all]' for everything)")


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LeverError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            fix = missing_extra(exc)
            if fix is None:
                raise
            click.echo(f"error: {fix}", err=True)
            sys.exit(2)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lever-transfer")
def main() -> None:
    """LeVER: pixel RL that freezes its encoder and replays latents; a zoo of frozen encoders."""
    show_library_messages()


class _EchoHandler(logging.Handler):
    """Library log records as plain lines on the stderr of the moment (click swaps it in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def show_library_messages() -> None:
    """The CLI shows what the ``lever_transfer`` logger says at INFO and above, as plain lines;
    a Python user's own ``logging`` configuration decides instead."""
    logger = logging.getLogger("lever_transfer")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def overrides(options: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    """``--set`` values, then the command's own options that were given, on top."""
    from ..config import parse_set_options

    values = parse_set_options(list(sets))
    values.update({key: value for key, value in options.items() if value is not None})
    return values


# Options several commands take, declared once; a command adds its own help text and default.


seed_option = functools.partial(click.option, "--seed", type=int)


device_option = functools.partial(click.option, "--device",
                                  type=click.Choice(["auto", "cpu", "cuda"]))


set_option = functools.partial(click.option, "--set", "sets", multiple=True, metavar="KEY=VALUE")


out_option = functools.partial(click.option, "--out", type=click.Path(path_type=Path))


progress_option = functools.partial(click.option, "--no-progress", is_flag=True)


precision_option = functools.partial(
    click.option, "--precision", type=click.Choice(["auto", "fp32", "bf16"]),
    help="bf16 autocast or float32; auto: bf16 where the CPU has AMX-BF16 or AVX512-BF16 (or a "
         "CUDA GPU does bf16), float32 elsewhere.")


def run_options(out_help: str | None = None, set_help: str | None = None,
                progress_help: str | None = None) -> Decorator:
    """--seed, --device, --precision, --set, --out and --no-progress: the options of every
    command that starts a run."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [seed_option(), device_option(), precision_option(), set_option(help=set_help),
                   out_option(help=out_help), progress_option(help=progress_help)]
        for option in reversed(options):  # listed in --help in this order
            fn = option(fn)
        return fn
    return decorate


def load_run_config(recipe: str, options: dict[str, Any], sets: tuple[str, ...]):
    """Recipe + flags + --set overrides, validated, with the task checked against dm_control
    or ale-py."""
    from ..config import load_config
    from ..envs import check_task

    cfg = load_config(recipe, overrides(options, sets))
    check_task(cfg.task)
    return cfg


def task_stem(task: str) -> str:
    """A task as a folder name: ``atari:qbert`` -> ``atari-qbert``."""
    return task.replace(":", "-")


def new_run_dir(out: Path | None, stem: str) -> Path:
    """``--out``, or ``runs/STEM-DATE-TIME``; refused if it already holds a run (a checkpoint:
    an attempt killed before its first one starts again)."""
    from ..run_dir import RunDir

    run_dir = out or Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if RunDir(run_dir).holds_run():
        raise LeverError(f"{run_dir} already holds a run; continue it with "
                         f"'lever-transfer resume {run_dir}' or choose another --out")
    return run_dir
