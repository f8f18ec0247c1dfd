"""The mmcv stand-in: RoIAlign numerically (against torchvision when it loads, else against a
scalar transcription of the kernel and hand values), ConvModule's layout, and the upstream
region encoder built and run through it."""

from __future__ import annotations

import math

import pytest
import torch

from harness_glamm import mmcv_shim


def _scalar_roi_align(feat, roi, out_hw, scale, ratio, aligned):
    """torchvision's CPU kernel (roi_align_kernel.cpp) written with Python scalars."""
    c, h, w = feat.shape
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v * scale - off for v in roi)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    ph, pw = out_hw
    bh, bw = rh / ph, rw / pw
    gh = ratio if ratio > 0 else math.ceil(rh / ph)
    gw = ratio if ratio > 0 else math.ceil(rw / pw)
    count = max(gh * gw, 1)
    out = torch.zeros(c, ph, pw, dtype=torch.float64)
    for i in range(ph):
        for j in range(pw):
            for iy in range(gh):
                y = y1 + i * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = x1 + j * bw + (ix + 0.5) * bw / gw
                    if y < -1.0 or y > h or x < -1.0 or x > w:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    yl, xl = int(y), int(x)
                    if yl >= h - 1:
                        yh = yl = h - 1
                        y = float(yl)
                    else:
                        yh = yl + 1
                    if xl >= w - 1:
                        xh = xl = w - 1
                        x = float(xl)
                    else:
                        xh = xl + 1
                    ly, lx = y - yl, x - xl
                    hy, hx = 1 - ly, 1 - lx
                    out[:, i, j] += (hy * hx * feat[:, yl, xl] + hy * lx * feat[:, yl, xh] + ly * hx * feat[:, yh, xl]
                                     + ly * lx * feat[:, yh, xh]).double()
    return (out / count).float()


CASES = [
    ([0.0, 1.0, 1.0, 5.0, 6.0], (2, 2), 1.0, 2, True),
    ([0.0, -2.0, 0.5, 9.5, 7.0], (3, 2), 1.0, 0, True),  # partly outside, adaptive sampling
    ([1.0, 3.0, 2.0, 14.0, 12.0], (14, 14), 0.5, 2, True),  # GLaMM's output size and sampling ratio
    ([0.0, 2.0, 2.0, 3.0, 3.0], (2, 2), 1.0, 2, False),  # legacy, roi smaller than 1
]


@pytest.mark.parametrize("roi,out_hw,scale,ratio,aligned", CASES)
def test_pure_torch_roi_align_matches_kernel(roi, out_hw, scale, ratio, aligned) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 10)
    rois = torch.tensor([roi])
    ours = mmcv_shim.roi_align(x, rois, out_hw, scale, ratio, aligned)
    expected = _scalar_roi_align(x[int(roi[0])], roi[1:], out_hw, scale, ratio, aligned)
    torch.testing.assert_close(ours[0], expected, rtol=1e-5, atol=1e-5)


def test_roi_align_on_a_linear_ramp_by_hand() -> None:
    # f(y, x) = x: bilinear sampling of a linear function is exact, so every bin averages to its
    # centre's x. RoI x 1..5 (aligned: 0.5..4.5 in pixel centres), 2 bins: centres 1.5 and 3.5.
    feat = torch.arange(8, dtype=torch.float32).repeat(6, 1)[None, None]
    out = mmcv_shim.roi_align(feat, torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]]), (2, 2), 1.0, 2, True)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.5, 3.5], [1.5, 3.5]]))


def test_roi_align_module_interface_and_torchvision_agreement() -> None:
    m = mmcv_shim.RoIAlign(output_size=14, spatial_scale=1 / 4, sampling_ratio=2)
    assert m.output_size == (14, 14) and m.aligned and m.pool_mode == "avg"
    torch.manual_seed(1)
    x, rois = torch.randn(1, 4, 16, 16), torch.tensor([[0.0, 4.0, 8.0, 40.0, 50.0]])
    tv = mmcv_shim._torchvision_roi_align()
    reference = mmcv_shim.roi_align(x, rois, (14, 14), 1 / 4, 2, True)
    torch.testing.assert_close(m(x, rois), reference, rtol=1e-5, atol=1e-5)
    if tv is None:
        pytest.skip("torchvision does not load beside this torch: compared with the pure-torch kernel only")
    torch.testing.assert_close(reference, tv(x, rois, (14, 14), 1 / 4, 2, True), rtol=1e-5, atol=1e-5)


def test_conv_module_layout() -> None:
    m = mmcv_shim.ConvModule(64, 64, 3, stride=1, padding=1, conv_cfg=None, norm_cfg=dict(type="GN", num_groups=64, requires_grad=True))
    assert sorted(m.state_dict()) == ["conv.weight", "gn.bias", "gn.weight"]  # mmcv: no conv bias with a norm
    x = torch.randn(1, 64, 5, 5)
    expected = torch.relu(m.gn(m.conv(x)))
    torch.testing.assert_close(m(x), expected)


@pytest.mark.slow
def test_upstream_region_encoder_builds_and_runs(glamm_repo) -> None:
    from harness_glamm.upstream import import_module

    layers = import_module(glamm_repo, "model.layers")
    import mmcv

    assert mmcv.__version__ == "1.4.7" and mmcv_shim.installed()
    torch.manual_seed(0)
    enc = layers.MLVLROIQueryModule(embed_dims=64, out_dims=4096, num_levels=4)  # upstream: 1024 wide
    assert isinstance(enc.roi_align.roi_layers[0], mmcv_shim.RoIAlign)
    assert [round(1 / r.spatial_scale, 3) for r in enc.roi_align.roi_layers] == [1.75, 3.5, 7.0, 14.0]
    # its forward casts to bfloat16 (hard-coded upstream); run it in bf16 on 4 levels of 24x24 CLIP features
    enc = enc.to(torch.bfloat16)
    feats = [torch.randn(1, 576, 64, dtype=torch.bfloat16) for _ in range(4)]
    out = enc(feats, [torch.tensor([[0.1, 0.2, 0.6, 0.9]], dtype=torch.bfloat16)])
    assert len(out) == 1 and out[0].shape == (1, 4096)
