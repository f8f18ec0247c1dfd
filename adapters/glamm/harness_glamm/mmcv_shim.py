"""A small stand-in for the parts of mmcv (and of GLaMM's vendored mmdet) that GLaMM imports.

GLaMM's LLaVA always builds a region encoder (``model/layers.py MLVLROIQueryModule``, inside
``model/llava/llava_with_region_arch.py LlavaMetaModel.__init__``) even though referring
segmentation passes ``bboxes=None`` and never calls it. ``model/layers.py`` imports
``mmdet.models.BaseRoIExtractor`` and ``mmcv.cnn.ConvModule, Linear, normal_init``; the base
extractor imports ``mmcv.ops`` (for ``RoIAlign``) and ``mmcv.runner.BaseModule``. Upstream
installs mmcv 1.4.7 built from source with its CUDA ops, which does not build for current
GPUs and torch 2.x; importing the vendored ``mmdet.models`` package would in turn need some
fifty further mmcv names (detectors, heads, hooks, ops).

``install(repo)`` puts into ``sys.modules``:

- ``mmcv`` (``__version__ = "1.4.7"``), ``mmcv.cnn`` (``ConvModule`` with mmcv 1.x's
  conv -> norm -> ReLU order, its ``bias="auto"`` rule and parameter names ``conv``/``gn``/``bn``,
  ``Linear``, ``normal_init``), ``mmcv.runner`` (``BaseModule``) and ``mmcv.ops`` (``RoIAlign``
  with mmcv's signature and defaults, computed by ``torchvision.ops.roi_align`` when
  torchvision loads, else by the pure-torch ``roi_align`` below, which follows the same
  bilinear-sampling rules);
- ``mmdet`` and ``mmdet.models`` holding only ``BaseRoIExtractor``, executed from the checkout's
  own ``mmdet/models/roi_heads/roi_extractors/base_roi_extractor.py`` (nothing is copied).

So the checkpoint's region-encoder weights load into modules with the same names and shapes,
and the module would compute what mmcv computes if it were ever called.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

MMCV_VERSION = "1.4.7"  # what GLaMM's docs/install.md builds; mmdet asserts 1.3.17 <= mmcv <= 1.5.0


def _pair(x: Any) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


# -- mmcv.ops.RoIAlign ------------------------------------------------------------------------

def _bilinear(feat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of feat (C, H, W) at points y, x (same shape S), with the rules of
    mmcv's / torchvision's roi_align kernels: 0 outside [-1, H] x [-1, W], coordinates below 0
    clamped to 0, the last row/column repeated at the border."""
    c, h, w = feat.shape
    valid = (y >= -1.0) & (y <= h) & (x >= -1.0) & (x <= w)
    y = y.clamp(min=0.0)
    x = x.clamp(min=0.0)
    y_low = y.floor().long()
    x_low = x.floor().long()
    y_at_end = y_low >= h - 1
    x_at_end = x_low >= w - 1
    y_low = torch.where(y_at_end, torch.full_like(y_low, h - 1), y_low)
    x_low = torch.where(x_at_end, torch.full_like(x_low, w - 1), x_low)
    y = torch.where(y_at_end, y_low.to(y.dtype), y)
    x = torch.where(x_at_end, x_low.to(x.dtype), x)
    y_high = torch.where(y_at_end, y_low, y_low + 1)
    x_high = torch.where(x_at_end, x_low, x_low + 1)
    ly, lx = y - y_low.to(y.dtype), x - x_low.to(x.dtype)
    hy, hx = 1.0 - ly, 1.0 - lx
    flat = feat.reshape(c, h * w)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return flat[:, (yy * w + xx).reshape(-1)].reshape(c, *yy.shape)

    out = hy * hx * at(y_low, x_low) + hy * lx * at(y_low, x_high) + ly * hx * at(y_high, x_low) + ly * lx * at(y_high, x_high)
    return out * valid.to(out.dtype)


def roi_align(input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """Average RoIAlign in pure torch: (N, C, H, W) features, (K, 5) rois [batch, x1, y1, x2, y2]
    -> (K, C, ph, pw). The semantics of ``torchvision.ops.roi_align`` and ``mmcv.ops.roi_align``
    (``pool_mode="avg"``): half-pixel offset when ``aligned``, rois at least 1x1 when not,
    ``sampling_ratio`` points per bin side (adaptive ``ceil(roi / bin)`` when 0)."""
    ph, pw = _pair(output_size)
    out = input.new_zeros((rois.shape[0], input.shape[1], ph, pw))
    offset = 0.5 if aligned else 0.0
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in rois[k, 1:].tolist())
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / ph), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / pw), 0)
        count = max(gh * gw, 1)
        dev, dt = input.device, input.dtype
        iy = (torch.arange(gh, device=dev, dtype=dt) + 0.5) / gh
        ix = (torch.arange(gw, device=dev, dtype=dt) + 0.5) / gw
        ys = y1 + (torch.arange(ph, device=dev, dtype=dt)[:, None] + iy[None, :]) * bh  # (ph, gh)
        xs = x1 + (torch.arange(pw, device=dev, dtype=dt)[:, None] + ix[None, :]) * bw  # (pw, gw)
        yy = ys[:, None, :, None].expand(ph, pw, gh, gw)
        xx = xs[None, :, None, :].expand(ph, pw, gh, gw)
        samples = _bilinear(input[b], yy, xx)  # (C, ph, pw, gh, gw)
        out[k] = samples.sum(dim=(-1, -2)) / count
    return out


def _torchvision_roi_align() -> Any:
    try:
        from torchvision.ops import roi_align as tv_roi_align

        tv_roi_align(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), (1, 1))  # loads its operators, or raises
        return tv_roi_align
    except Exception:
        return None


class RoIAlign(nn.Module):
    """``mmcv.ops.RoIAlign`` (mmcv 1.4.7): same constructor, attributes and forward(input, rois)."""

    def __init__(self, output_size: Any, spatial_scale: float = 1.0, sampling_ratio: int = 0, pool_mode: str = "avg",
                 aligned: bool = True, use_torchvision: bool = False) -> None:
        super().__init__()
        if pool_mode != "avg":
            raise NotImplementedError("the mmcv stand-in implements pool_mode='avg' only (what GLaMM builds)")
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = aligned
        self.use_torchvision = use_torchvision

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        tv = _torchvision_roi_align()
        if tv is not None:
            return tv(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, pool_mode={self.pool_mode}, aligned={self.aligned})")


# -- mmcv.cnn ---------------------------------------------------------------------------------

def normal_init(module: nn.Module, mean: float = 0.0, std: float = 1.0, bias: float = 0.0) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.normal_(module.weight, mean, std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


Linear = nn.Linear  # mmcv.cnn.Linear: nn.Linear that also accepts empty inputs on torch < 1.5

_NORMS = {"GN": ("gn", nn.GroupNorm), "BN": ("bn", nn.BatchNorm2d), "BN2d": ("bn", nn.BatchNorm2d), "LN": ("ln", nn.LayerNorm)}


class ConvModule(nn.Module):
    """``mmcv.cnn.ConvModule`` for what GLaMM builds: conv (``bias="auto"``: a bias only without a
    norm), then the norm (named ``gn``/``bn`` as mmcv names it), then ReLU (in place), and mmcv's
    initialisation (Kaiming normal, fan_out, for the conv; weight 1 / bias 0 for the norm)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: Any = "auto", conv_cfg: Any = None, norm_cfg: Any = None,
                 act_cfg: Any = None, inplace: bool = True, order: tuple[str, ...] = ("conv", "norm", "act"), **_: Any) -> None:
        super().__init__()
        if conv_cfg not in (None, {}) and dict(conv_cfg).get("type", "Conv2d") != "Conv2d":
            raise NotImplementedError(f"the mmcv stand-in builds Conv2d only, got {conv_cfg!r}")
        act_cfg = {"type": "ReLU"} if act_cfg is None else act_cfg
        self.order = tuple(order)
        self.with_norm = norm_cfg is not None
        self.with_activation = act_cfg is not None and bool(act_cfg)
        use_bias = (not self.with_norm) if bias == "auto" else bool(bias)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, bias=use_bias)
        self.norm_name: str | None = None
        if self.with_norm:
            cfg = dict(norm_cfg)
            kind = cfg.pop("type")
            requires_grad = cfg.pop("requires_grad", True)
            if kind not in _NORMS:
                raise NotImplementedError(f"the mmcv stand-in has no norm {kind!r}")
            name, cls = _NORMS[kind]
            norm = cls(num_channels=out_channels, **cfg) if kind == "GN" else cls(out_channels, **cfg)
            for p in norm.parameters():
                p.requires_grad = requires_grad
            self.norm_name = name
            self.add_module(name, norm)
        if self.with_activation:
            if dict(act_cfg).get("type") != "ReLU":
                raise NotImplementedError(f"the mmcv stand-in has ReLU only, got {act_cfg!r}")
            self.activate = nn.ReLU(inplace=inplace)
        self.init_weights()

    @property
    def norm(self) -> nn.Module | None:
        return getattr(self, self.norm_name) if self.norm_name else None

    def init_weights(self) -> None:
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.constant_(self.conv.bias, 0)
        norm = self.norm
        if norm is not None and getattr(norm, "weight", None) is not None:
            nn.init.constant_(norm.weight, 1)
            nn.init.constant_(norm.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.order:
            if layer == "conv":
                x = self.conv(x)
            elif layer == "norm" and self.norm is not None:
                x = self.norm(x)
            elif layer == "act" and self.with_activation:
                x = self.activate(x)
        return x


# -- mmcv.runner ------------------------------------------------------------------------------

class BaseModule(nn.Module):
    """``mmcv.runner.BaseModule``: an nn.Module that keeps ``init_cfg``; ``init_weights`` is a no-op
    here (GLaMM's modules initialise themselves, and the checkpoint overwrites them)."""

    def __init__(self, init_cfg: Any = None) -> None:
        super().__init__()
        self._is_init = False
        self.init_cfg = init_cfg

    @property
    def is_init(self) -> bool:
        return self._is_init

    def init_weights(self) -> None:
        self._is_init = True


# -- installing ---------------------------------------------------------------------------------

def _module(name: str, package: bool = False, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if package:
        module.__path__ = []  # type: ignore[attr-defined]
    module.__dict__.update(attrs)
    return module


def installed() -> bool:
    return getattr(sys.modules.get("mmcv"), "_HARNESS_SHIM", False)


def install(repo: Path) -> None:
    """Register the stand-ins (once per process). Refuses when a real mmcv or another mmdet is loaded."""
    if installed():
        return
    for name in ("mmcv", "mmdet"):
        if name in sys.modules:
            raise RuntimeError(f"{name} is already imported in this process; the GLaMM adapter's mmcv stand-in "
                               "must be installed first (or use mmcv: installed)")
    ops = _module("mmcv.ops", RoIAlign=RoIAlign, roi_align=roi_align)
    cnn = _module("mmcv.cnn", ConvModule=ConvModule, Linear=Linear, normal_init=normal_init)
    runner = _module("mmcv.runner", BaseModule=BaseModule)
    mmcv = _module("mmcv", package=True, __version__=MMCV_VERSION, ops=ops, cnn=cnn, runner=runner, _HARNESS_SHIM=True)
    sys.modules.update({"mmcv": mmcv, "mmcv.ops": ops, "mmcv.cnn": cnn, "mmcv.runner": runner})
    path = repo / "mmdet" / "models" / "roi_heads" / "roi_extractors" / "base_roi_extractor.py"
    spec = importlib.util.spec_from_file_location("mmdet.models.roi_heads.roi_extractors.base_roi_extractor", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    models = _module("mmdet.models", package=True, BaseRoIExtractor=base.BaseRoIExtractor)
    mmdet = _module("mmdet", package=True, models=models, __version__="2.22.0")
    sys.modules.update({"mmdet": mmdet, "mmdet.models": models})
