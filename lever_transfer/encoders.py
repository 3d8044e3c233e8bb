"""Convolutional encoders as ordered lists of layers.

LeVER freezes "the first N layers" and stores "the output of layer N" as the latent, so an encoder
here is nothing but an indexed sequence: ``encoder(x, start, stop)`` runs layers ``start+1 .. stop``
(1-based layer numbers, as the paper counts them), ``freeze(n)`` freezes layers ``1..n``, and
``output_shape(n)`` is the latent shape at layer ``n``. Pixel scaling (uint8 -> [0, 1]) happens when
a forward starts at layer 0, so the input of layer 1 is always an uint8 observation.

Two architectures:
- ``CurlEncoder``: the SAC-AE/CURL encoder (4 convs 3x3 x 32 filters, the first with stride 2,
  then fc + LayerNorm to 50 dims). Layers 1-4 are the convs, layer 5 is fc + LayerNorm.
- ``ImpalaEncoder``: the IMPALA ResNet (section 5.3: 15 convs in 3 stacks of conv + max-pool and two
  residual blocks), then fc + LayerNorm. A residual block cannot be cut in the middle, so its
  layers are: stack conv + pool, residual block, residual block (x3), then fc: 10 layers.
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import ConfigError
from .precision import full_precision

FreezeSpec = int | str  # a layer count, or "all"


def orthogonal_init(module: nn.Module) -> None:
    """SAC-AE/CURL initialisation: orthogonal linear weights, delta-orthogonal convolutions."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.zeros_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        mid_h, mid_w = module.weight.shape[2] // 2, module.weight.shape[3] // 2
        nn.init.orthogonal_(module.weight[:, :, mid_h, mid_w], nn.init.calculate_gain("relu"))


class LayeredEncoder(nn.Module):
    """An encoder whose forward is a sequence of named layers that can be cut and frozen."""

    def __init__(self, layers: Sequence[nn.Module], names: Sequence[str],
                 obs_shape: tuple[int, ...],
                 channels_last: bool = False):
        super().__init__()
        if len(layers) != len(names):
            raise ValueError("one name per layer")
        self.layers = nn.ModuleList(layers)
        self.layer_names = list(names)
        self.obs_shape = tuple(obs_shape)
        self.channels_last = channels_last
        self.frozen_layers = 0
        self._shapes: list[tuple[int, ...]] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def scale(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float in [0, 1], in the memory format the convs run fastest in."""
        if self.channels_last and obs.dim() == 4:  # reorder the uint8s: a quarter of the bytes
            obs = obs.contiguous(memory_format=torch.channels_last)
        return obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs.float()

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self.num_layers if stop is None else stop
        if start == 0:
            x = self.scale(x)
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x

    def resolve_layers(self, n: FreezeSpec) -> int:
        """Turn a freeze spec ("all" or 0..num_layers) into a layer count, refusing bad values."""
        if n == "all":
            return self.num_layers
        if isinstance(n, str) and n.isdigit():
            n = int(n)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= self.num_layers:
            raise ConfigError(f"freeze_layers must be 0..{self.num_layers} or 'all' for this "
                              f"encoder ({', '.join(self.layer_names)}), got {n!r}")
        return n

    def freeze(self, n: FreezeSpec) -> int:
        """Freeze layers 1..n: no gradients, no optimizer state, inference mode. Returns n."""
        n = self.resolve_layers(n)
        for layer in self.layers[:n]:
            layer.requires_grad_(False)
            layer.eval()
        self.frozen_layers = max(self.frozen_layers, n)
        return n

    def train(self, mode: bool = True) -> "LayeredEncoder":
        super().train(mode)
        for layer in self.layers[: self.frozen_layers]:
            layer.eval()  # frozen layers stay in inference mode whatever the agent does
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def output_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer (index i = layer i+1), from one dummy forward."""
        if self._shapes is None:
            shapes = []
            with torch.no_grad():
                x = torch.zeros((1, *self.obs_shape), dtype=torch.uint8,
                                device=next(self.parameters()).device)
                x = self.scale(x)
                for layer in self.layers:
                    x = layer(x)
                    shapes.append(tuple(x.shape[1:]))
            self._shapes = shapes
        return self._shapes

    def output_shape(self, n: int) -> tuple[int, ...]:
        return self.obs_shape if n == 0 else self.output_shapes()[n - 1]

    @property
    def feature_dim(self) -> int:
        return int(torch.tensor(self.output_shape(self.num_layers)).prod())


def _conv_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride), nn.ReLU(inplace=True))


class _Head(nn.Sequential):
    """fc + LayerNorm: the last encoder layer, the one the paper freezes on DMC."""

    def __init__(self, in_features: int, feature_dim: int, relu_first: bool = False):
        mods: list[nn.Module] = [nn.Flatten()]
        if relu_first:
            mods.append(nn.ReLU())
        mods += [nn.Linear(in_features, feature_dim), nn.LayerNorm(feature_dim)]
        super().__init__(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In float32 even under bf16 autocast: the latent it writes is what CURL contrasts, the
        heads read and latent replay stores, and bf16 keeps 8 bits of it (walker_stand learned
        worse with a bf16 latent, docs/results.md (f)); fc is a small share of the encoder's
        FLOPs."""
        with full_precision(x.device):
            return super().forward(x.float())


class CurlEncoder(LayeredEncoder):
    """SAC-AE/CURL pixel encoder: conv1 (stride 2), conv2-4 (stride 1), fc + LayerNorm."""

    def __init__(self, obs_shape: tuple[int, int, int], feature_dim: int = 50,
                 num_filters: int = 32, num_conv_layers: int = 4, channels_last: bool = False):
        convs = [_conv_relu(obs_shape[0], num_filters, 2)]
        convs += [_conv_relu(num_filters, num_filters, 1) for _ in range(num_conv_layers - 1)]
        with torch.no_grad():
            x = torch.zeros((1, *obs_shape))
            for conv in convs:
                x = conv(x)
        head = _Head(x[0].numel(), feature_dim)
        names = [f"conv{i + 1}" for i in range(num_conv_layers)] + ["fc"]
        super().__init__([*convs, head], names, obs_shape, channels_last)
        self.num_conv_layers = num_conv_layers
        self.apply(orthogonal_init)

    @classmethod
    def build(cls, obs_shape: tuple[int, int, int], *, feature_dim: int, num_filters: int,
              num_conv_layers: int, channels_last: bool) -> CurlEncoder:
        return cls(obs_shape, feature_dim, num_filters, num_conv_layers, channels_last)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaEncoder(LayeredEncoder):
    """IMPALA ResNet encoder (Espeholt et al. 2018), 15 convs, cut at residual-block boundaries."""

    def __init__(self, obs_shape: tuple[int, int, int], feature_dim: int = 50,
                 channels: Iterable[int] = (16, 32, 32), channels_last: bool = False):
        layers: list[nn.Module] = []
        names: list[str] = []
        cin = obs_shape[0]
        for s, cout in enumerate(channels, start=1):
            layers.append(nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1),
                                        nn.MaxPool2d(3, stride=2, padding=1)))
            layers += [_ResidualBlock(cout), _ResidualBlock(cout)]
            names += [f"stack{s}.conv", f"stack{s}.res1", f"stack{s}.res2"]
            cin = cout
        with torch.no_grad():
            x = torch.zeros((1, *obs_shape))
            for layer in layers:
                x = layer(x)
        layers.append(_Head(x[0].numel(), feature_dim, relu_first=True))
        names.append("fc")
        super().__init__(layers, names, obs_shape, channels_last)
        self.num_conv_layers = len(layers) - 1
        self.apply(orthogonal_init)

    @classmethod
    def build(cls, obs_shape: tuple[int, int, int], *, feature_dim: int, num_filters: int,
              num_conv_layers: int, channels_last: bool) -> ImpalaEncoder:
        """Its channels are fixed (16, 32, 32): the filter and conv counts are not its own."""
        return cls(obs_shape, feature_dim, channels_last=channels_last)


class DataEfficientEncoder(LayeredEncoder):
    """Data-efficient Rainbow's Atari encoder (van Hasselt et al. 2019; LeVER appendix H):
    conv1 32 x 5x5 stride 5, conv2 64 x 5x5 stride 5, ReLU after each: 4x84x84 -> 64x3x3 = 576.

    LeVER on Atari freezes both convs (the last conv layer, N = 1 network, K = 1) and stores the
    576-d output; the dueling noisy heads flatten it.
    """

    def __init__(self, obs_shape: tuple[int, int, int] = (4, 84, 84),
                 channels_last: bool = False):
        layers = [nn.Sequential(nn.Conv2d(obs_shape[0], 32, 5, stride=5), nn.ReLU(inplace=True)),
                  nn.Sequential(nn.Conv2d(32, 64, 5, stride=5), nn.ReLU(inplace=True))]
        super().__init__(layers, ["conv1", "conv2"], obs_shape, channels_last)
        self.num_conv_layers = 2

    @classmethod
    def build(cls, obs_shape: tuple[int, int, int], *, feature_dim: int, num_filters: int,
              num_conv_layers: int, channels_last: bool) -> DataEfficientEncoder:
        """Fixed by table 3: no fc, so no feature_dim; 32 and 64 filters."""
        return cls(obs_shape, channels_last)


def make_encoder(name: str, obs_shape: tuple[int, int, int], feature_dim: int = 50,
                 num_filters: int = 32, num_conv_layers: int = 4, channels_last: bool = False,
                 ) -> LayeredEncoder:
    """The encoder ``name`` (``registry.ENCODERS``) with the recipe's architecture settings;
    each class takes the ones it has."""
    from .registry import encoder_class

    return encoder_class(name).build(obs_shape, feature_dim=feature_dim, num_filters=num_filters,
                                     num_conv_layers=num_conv_layers,
                                     channels_last=channels_last)


def tied_encoder(encoder: LayeredEncoder) -> LayeredEncoder:
    """A second encoder whose conv layers ARE the given encoder's (CURL's actor shares the
    critic's convs) and whose fc + LayerNorm is its own."""
    twin = copy.deepcopy(encoder)
    n = encoder.num_layers - 1
    for i in range(n):
        twin.layers[i] = encoder.layers[i]
    twin.layers[n].apply(orthogonal_init)
    twin.frozen_layers = encoder.frozen_layers
    twin._shapes = None
    return twin
