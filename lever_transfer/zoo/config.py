"""A package's ``config.json`` as a frozen, typed ``PackageConfig``, parsed and checked once when
a package is read (or before one is written), so no loader guesses a key or a default.

Older packages are brought up to today's form in one place, ``upgrade``: every default a reader
would otherwise fill in itself (stored dtype, heads kind, frame spacing, render quality) lives
there. ``source`` (the run it came from) and ``probes`` (recorded linear probes, one per task)
stay mappings: they are provenance the model card and ``zoo list`` quote, not something a loader
acts on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import LeverError

FORMAT = "lever-transfer/encoder-package/1"
PARTS = ("encoder", "actor_fc", "heads")
STORED_DTYPES = ("float32", "float16")  # what floating-point weights may be stored as
MAX_LAYER_SIZE = 8192  # refuse configs that would build absurd networks before building them
DEFAULT_ACTION_REPEAT = 2  # packages from before the frame spacing was recorded: DMC's default

_REQUIRED = {"format": str, "architecture": str, "architecture_args": dict, "layers": list,
             "observation": dict, "parts": list, "sha256": str}
_OBSERVATION = ("channels", "frame_stack", "render_size", "crop_size", "pixel_scaling")


class PackageError(LeverError):
    """An encoder package that is missing, damaged, tampered with or inconsistent."""


@dataclass(frozen=True)
class Layer:
    index: int  # 1-based, as --freeze-layers counts
    name: str
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class Observation:
    """What the encoder reads: uint8 ``[channels * frame_stack, crop_size, crop_size]``, cut
    from renders of ``render_size`` and scaled ``pixel_scaling``."""

    channels: int
    frame_stack: int
    render_size: int
    crop_size: int
    pixel_scaling: str
    layout: str
    crop: str
    action_repeat: int | None  # env steps between stacked frames; None: per task (offline data)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels * self.frame_stack, self.crop_size, self.crop_size)


@dataclass(frozen=True)
class PackageConfig:
    """Everything a loader needs from ``config.json``, typed; ``document`` is the file's object
    after ``upgrade`` (what ``zoo show --json`` prints and what rewrites start from). Frozen;
    the mappings are plain dicts (a ZooEncoder is deep-copied and pickled by SB3 and torch), to
    be read, not changed: ``to_json`` gives a copy to change."""

    architecture: str
    obs_shape: tuple[int, int, int]
    feature_dim: int
    num_filters: int
    num_conv_layers: int
    layers: tuple[Layer, ...]
    observation: Observation
    parts: tuple[str, ...]
    sha256: str
    stored_dtype: str
    num_parameters: int | None  # declared total of the tensors' values (None: not declared)
    heads: Mapping[str, Any] | None  # sizes and kind of the task heads, when the package has them
    source: Mapping[str, Any]  # the run or data it came from (empty for hand-saved encoders)
    probes: tuple[Mapping[str, Any], ...]  # recorded linear probes, one per task
    frozen_layers: int | None  # a run's own encoder package: the layers frozen when written
    document: Mapping[str, Any]

    @property
    def has_heads(self) -> bool:
        return "heads" in self.parts

    @property
    def task(self) -> str | None:
        """The source task (None for encoders pretrained offline on several tasks)."""
        return self.source.get("task")

    @property
    def render_quality(self) -> str:
        return str(self.source.get("render_quality", "paper"))

    @property
    def is_offline(self) -> bool:
        return self.source.get("kind") == "offline"

    def to_json(self) -> dict[str, Any]:
        """A deep copy of ``document``, to change and write again."""
        return copy.deepcopy(dict(self.document))


def upgrade(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` in today's form: the one place older packages are read compatibly.

    - ``stored_dtype`` absent: float32 (written before float16 storage existed);
    - ``heads`` without ``kind``: SAC's (written before head kinds were named);
    - ``observation.action_repeat`` absent: the source run's (``source.action_repeat``, else its
      recipe's), else 2; none for offline encoders, whose spacing is per task;
    - no ``source.render_quality``: ``paper`` (``PackageConfig.render_quality``: every render
      before the setting existed, and hand-saved encoders, which record no source);
    - ``probe`` (one task's recorded probe, before several could be kept): ``probes``, a list.
    """
    out = copy.deepcopy(dict(document))
    out.setdefault("stored_dtype", "float32")
    if "probe" in out:
        single = out.pop("probe")
        out.setdefault("probes", [single] if isinstance(single, dict) else [])
    if isinstance(out.get("heads"), dict):
        out["heads"].setdefault("kind", "sac")
    source = out.get("source")
    observation = out.get("observation")
    if isinstance(observation, dict) and "action_repeat" not in observation:
        run: dict[str, Any] = source if isinstance(source, dict) else {}
        if run.get("kind") != "offline":
            recipe = run["recipe"] if isinstance(run.get("recipe"), dict) else {}
            observation["action_repeat"] = run.get(
                "action_repeat", recipe.get("action_repeat", DEFAULT_ACTION_REPEAT))
    return out


def parse_config(document: Any, where: str = "config.json") -> PackageConfig:
    """Check ``document`` (a config.json object) and return it typed; every failure is one
    ``PackageError`` line naming ``where`` and what to do."""
    if not isinstance(document, dict):
        raise PackageError(f"{where} must hold a JSON object; pull the package again")
    for key, kind in _REQUIRED.items():
        if not isinstance(document.get(key), kind):
            raise PackageError(f"{where} lacks '{key}' ({kind.__name__}); it was not written by "
                               f"lever-transfer or is damaged: pull the package again")
    if document["format"] != FORMAT:
        raise PackageError(f"{where} has format {document['format']!r}, this lever-transfer reads "
                           f"{FORMAT!r}; upgrade lever-transfer or re-publish the encoder")
    doc = upgrade(document)
    obs, args = doc["observation"], doc["architecture_args"]
    missing = [k for k in _OBSERVATION if k not in obs]
    if missing:
        raise PackageError(f"{where}: observation spec lacks {', '.join(missing)}; preprocessing "
                           f"is never guessed: re-publish the encoder")
    try:
        consistent = (list(args["obs_shape"]) == [obs["channels"] * obs["frame_stack"],
                                                  obs["crop_size"], obs["crop_size"]]
                      and 0 < obs["crop_size"] <= obs["render_size"])
    except (KeyError, TypeError):
        consistent = False
    if not consistent:
        raise PackageError(f"{where}: the observation spec (channels, frame_stack, crop_size, "
                           f"render_size) does not match the encoder's input shape; re-publish it")
    if str(doc["stored_dtype"]) not in STORED_DTYPES:
        raise PackageError(f"{where}: stored_dtype {doc['stored_dtype']!r} is not one of "
                           f"{', '.join(STORED_DTYPES)}; upgrade lever-transfer or re-publish it")
    sizes = [args.get(k) for k in ("feature_dim", "num_filters", "num_conv_layers")]
    heads = doc.get("heads")
    if isinstance(heads, dict):
        sizes += [heads.get("action_dim"), heads.get("hidden_dim")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_LAYER_SIZE
               for v in sizes):
        raise PackageError(f"{where}: layer sizes {sizes} are not positive integers up to "
                           f"{MAX_LAYER_SIZE}; not a config lever-transfer wrote: re-publish it")
    try:
        layers = tuple(Layer(int(layer["index"]), str(layer["name"]),
                             tuple(int(n) for n in layer["output_shape"]))
                       for layer in doc["layers"])
        repeat = obs.get("action_repeat")
        observation = Observation(
            int(obs["channels"]), int(obs["frame_stack"]), int(obs["render_size"]),
            int(obs["crop_size"]), str(obs["pixel_scaling"]), str(obs.get("layout", "")),
            str(obs.get("crop", "")), None if repeat is None else int(repeat))
    except (KeyError, TypeError, ValueError) as exc:
        raise PackageError(f"{where}: layers or observation spec unreadable "
                           f"({exc.__class__.__name__}: {exc}); re-publish the encoder") from None
    declared = doc.get("num_parameters")
    if declared is not None and (isinstance(declared, bool) or not isinstance(declared, int)):
        raise PackageError(f"{where} declares num_parameters {declared!r}, not a count of "
                           f"values; re-publish the encoder")
    return PackageConfig(
        architecture=doc["architecture"], obs_shape=observation.shape,
        feature_dim=int(args["feature_dim"]), num_filters=int(args["num_filters"]),
        num_conv_layers=int(args["num_conv_layers"]), layers=layers, observation=observation,
        parts=tuple(str(p) for p in doc["parts"]), sha256=doc["sha256"],
        stored_dtype=str(doc["stored_dtype"]),
        num_parameters=declared,
        heads=heads if isinstance(heads, dict) else None,
        source=doc.get("source") or {},
        probes=tuple(p for p in doc["probes"] if isinstance(p, dict))
        if isinstance(doc.get("probes"), list) else (),
        frozen_layers=doc.get("frozen_layers"), document=doc)
