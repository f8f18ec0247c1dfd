"""The synthetic shapes suite and its CPU reasoner, end to end."""

from __future__ import annotations

import collections
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import masks
from harness.answer import parse_bbox_answer, split_reasoning
from harness.builtin_adapters.shapes_reasoner import ShapesReasoner
from harness.data.conventions import Conventions
from harness.data.sources import SourceError
from harness.data.sources.shapes import ShapesSource, is_unambiguous, resolve
from harness.data.sources.shapes_scene import MAX_SHAPES, MIN_SHAPES, PALETTE, generate_scene
from harness.types import GroundTruth, ParseStatus, Prediction, Sample

SMALL = {"images": {"val": 8, "test": 8}}


def make(tmp_path: Path, **params: object) -> ShapesSource:
    return ShapesSource(params=dict(params), conventions=Conventions(), data_root=None, cache_dir=tmp_path)


def load(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def iou(pred: Prediction, gt: GroundTruth) -> float:
    assert pred.mask is not None
    inter = masks.intersection_area(pred.mask, gt.mask)
    union = masks.area(pred.mask) + masks.area(gt.mask) - inter
    return 1.0 if union == 0 else inter / union


def run_reasoner(samples: list[Sample]) -> list[Prediction]:
    adapter = ShapesReasoner()
    adapter.load()
    by_image: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in samples:
        by_image[s.image].append(s)
    preds: dict[str, Prediction] = {}
    for path, group in by_image.items():
        for s, p in zip(group, adapter.predict(load(path), group), strict=True):
            preds[s.id] = p
    return [preds[s.id] for s in samples]


# --- the source ---------------------------------------------------------------------------


def test_split_sizes_ids_and_kinds(tmp_path: Path) -> None:
    src = make(tmp_path)
    val, test = src.samples("val"), src.samples("test")
    assert len(val) == 40 * 4 and len(test) == 60 * 4
    for split, samples in (("val", val), ("test", test)):
        ids = [s.id for s in samples]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(rf"shapes/{split}/\d{{4}}/[0-3]", i) for i in ids)
        assert ids == sorted(ids)
        assert all(s.dataset == "shapes" and s.split == split for s in samples)
        assert all(s.id.split("/")[2] == f"{s.meta['image_index']:04d}" for s in samples)
    kinds = collections.Counter(s.meta["kind"] for s in val + test)
    assert set(kinds) == {"attribute", "spatial", "comparative", "no_target"}
    total = sum(kinds.values())
    assert 0.03 <= kinds["no_target"] / total <= 0.15
    for kind in ("attribute", "spatial", "comparative"):
        assert kinds[kind] / total >= 0.15
    assert all(s.no_target == (s.meta["kind"] == "no_target") for s in val + test)
    # expressions are distinct within an image
    per_image = collections.defaultdict(list)
    for s in val:
        per_image[s.image].append(s.expression)
    assert all(len(set(v)) == len(v) for v in per_image.values())


def test_determinism_and_seed(tmp_path: Path) -> None:
    a, b = make(tmp_path / "a", **SMALL), make(tmp_path / "b", **SMALL)
    for split in ("val", "test"):
        sa, sb = a.samples(split), b.samples(split)
        assert [(s.id, s.expression, s.gt.mask["counts"], s.gt.box) for s in sa] == \
               [(s.id, s.expression, s.gt.mask["counts"], s.gt.box) for s in sb]
        for x, y in zip(sorted({s.image for s in sa}), sorted({s.image for s in sb}), strict=True):
            assert Path(x).read_bytes() == Path(y).read_bytes()
    c = make(tmp_path / "c", seed=1, **SMALL)
    assert [s.expression for s in c.samples("val")] != [s.expression for s in a.samples("val")]
    assert Path(c.samples("val")[0].image).read_bytes() != Path(a.samples("val")[0].image).read_bytes()
    assert c.fingerprint != a.fingerprint
    assert make(tmp_path, images={"val": 3}, expressions_per_image=2).fingerprint == a.fingerprint  # same pixels, same PNGs
    # val and test are different draws
    assert Path(a.samples("val")[0].image).read_bytes() != Path(a.samples("test")[0].image).read_bytes()


def test_pngs_cached_and_reused(tmp_path: Path) -> None:
    src = make(tmp_path, **SMALL)
    first = src.samples("val")
    path = Path(first[0].image)
    assert path.is_file() and path.is_relative_to(tmp_path / "shapes" / src.fingerprint / "val")
    assert path.name == "0000.png"
    stamp = path.stat().st_mtime_ns
    again = make(tmp_path, **SMALL).samples("val")
    assert [s.gt for s in again] == [s.gt for s in first]
    assert path.stat().st_mtime_ns == stamp
    leftovers = [p for p in (tmp_path / "shapes").rglob("*") if p.is_file() and p.suffix != ".png"]
    assert leftovers == []


def test_unknown_split_and_bad_params(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"'train'.*val, test"):
        make(tmp_path).samples("train")
    with pytest.raises(SourceError, match="unknown parameter"):
        make(tmp_path, colour="red")
    with pytest.raises(SourceError, match="width"):
        make(tmp_path, width="wide")
    with pytest.raises(SourceError, match="images"):
        make(tmp_path, images={"val": -1})


def test_masks_match_png_pixels(tmp_path: Path) -> None:
    src = make(tmp_path, **SMALL)
    samples = src.samples("val")
    for index in range(8):
        scene, _ = src.scene("val", index)
        png = load(src.image_path("val", index))
        assert np.array_equal(png, scene.image)
        for colour, rgb in PALETTE.items():
            painted = (png == np.array(rgb, dtype=np.uint8)).all(-1)
            union = np.zeros(painted.shape, dtype=bool)
            for o in scene.objects:
                if o.colour == colour:
                    union |= o.mask
            assert np.array_equal(painted, union), (index, colour)
    for s in samples:
        if s.no_target:
            continue
        gt = masks.decode(s.gt.mask)
        png = load(s.image)
        colours = np.unique(png[gt], axis=0)
        assert len(colours) == 1 and tuple(int(v) for v in colours[0]) in PALETTE.values()  # solid shapes
        assert s.gt.box is not None and s.gt.box == masks.mask_box(s.gt.mask)
        x1, y1, x2, y2 = (int(v) for v in s.gt.box)
        inside = (png[y1:y2, x1:x2] == colours[0]).all(-1)
        scene, exprs = src.scene("val", s.meta["image_index"])
        target_index = exprs[int(s.id.rsplit("/", 1)[1])].target
        assert target_index is not None
        target = scene.objects[target_index]
        others = [o for o in scene.objects if o is not target and o.colour == target.colour and o.mask[y1:y2, x1:x2].any()]
        if not others:  # where no other shape of its colour reaches into the box, the box's pixels of that colour are the mask
            assert np.array_equal(inside, gt[y1:y2, x1:x2])


def test_no_target_samples(tmp_path: Path) -> None:
    samples = make(tmp_path).samples("val")
    empties = [s for s in samples if s.no_target]
    assert empties
    for s in empties:
        assert masks.area(s.gt.mask) == 0 and s.gt.box is None
        assert s.gt.mask["size"] == [240, 320]
    assert all(masks.area(s.gt.mask) > 0 and s.gt.box is not None for s in samples if not s.no_target)


def test_every_expression_unambiguous(tmp_path: Path) -> None:
    src = make(tmp_path, **SMALL)
    by_id = {s.id: s for s in src.samples("val") + src.samples("test")}
    for split in ("val", "test"):
        for index in range(8):
            scene, exprs = src.scene(split, index)
            assert len(exprs) == 4
            for j, e in enumerate(exprs):
                assert by_id[f"shapes/{split}/{index:04d}/{j}"].expression == e.text
                assert is_unambiguous(e.query, scene.objects, e.target), e.text
                assert resolve(e.query, scene.objects) == ([] if e.target is None else [e.target])
                if e.target is not None:
                    gt = masks.decode(by_id[f"shapes/{split}/{index:04d}/{j}"].gt.mask)
                    assert np.array_equal(gt, scene.objects[e.target].mask)


def test_generate_scene_is_pure() -> None:
    a = generate_scene(np.random.default_rng(7), 320, 240)
    b = generate_scene(np.random.default_rng(7), 320, 240)
    assert np.array_equal(a.image, b.image) and [o.shape for o in a.objects] == [o.shape for o in b.objects]
    assert MIN_SHAPES <= len(a.objects) <= MAX_SHAPES
    seen = np.zeros((240, 320), dtype=bool)
    for o in a.objects:
        assert o.area == o.mask.sum() > 0 and o.area <= o.full_area
        assert not (seen & o.mask).any()  # visible masks never overlap
        seen |= o.mask
    assert not np.array_equal(a.image, generate_scene(np.random.default_rng(8), 320, 240).image)


# --- the reasoner -------------------------------------------------------------------------


def test_reasoner_honest_accuracy_on_val(tmp_path: Path) -> None:
    samples = make(tmp_path).samples("val")
    preds = run_reasoner(samples)
    ious = np.array([iou(p, s.gt) for s, p in zip(samples, preds, strict=True)])
    acc = float((ious >= 0.5).mean())
    assert 0.5 <= acc <= 0.97, acc
    no_target = [p for s, p in zip(samples, preds, strict=True) if s.no_target]
    n_acc = np.mean([masks.area(p.mask) == 0 for p in no_target if p.mask is not None])
    assert n_acc >= 0.7
    for p in preds:
        assert p.parse_status is ParseStatus.OK and p.mask is not None
        assert p.text is not None and p.text.startswith("<think>I see ")
        think, answer = split_reasoning(p.text)
        assert think == p.reasoning and answer == p.answer
        boxes = parse_bbox_answer(answer)
        assert (p.box is None) == (boxes == []) == (masks.area(p.mask) == 0)
        if p.box is not None:
            assert p.box == boxes[0] and all(0 <= v <= 1000 and float(v).is_integer() for v in p.box)


def test_reasoner_never_reads_ground_truth(tmp_path: Path) -> None:
    samples = make(tmp_path, **SMALL).samples("val")
    blind = [dataclasses.replace(s, gt=GroundTruth(mask=masks.empty(1, 1)), meta={}, no_target=False,
                                 id=f"x{i}", dataset="other", split="other")
             for i, s in enumerate(samples)]
    assert run_reasoner(samples) == run_reasoner(blind)


def test_reasoner_explains_and_boxes_in_norm1000(tmp_path: Path) -> None:
    src = make(tmp_path, **SMALL)
    s = next(x for x in src.samples("val") if x.meta["kind"] == "comparative" and not x.no_target)
    (p,) = ShapesReasoner().predict(load(s.image), [s])
    assert ShapesReasoner.info.box_space == "norm1000"
    assert "area" in (p.reasoning or "")
    assert p.box is not None
    # the box is the predicted mask's tight box, normalised to 0-1000
    bx = masks.mask_box(p.mask)  # type: ignore[arg-type]
    assert bx is not None
    expect = (round(bx[0] / 320 * 1000), round(bx[1] / 240 * 1000), round(bx[2] / 320 * 1000), round(bx[3] / 240 * 1000))
    assert p.box == tuple(float(v) for v in expect)


def test_reasoner_on_unparsable_and_absent(tmp_path: Path) -> None:
    src = make(tmp_path, **SMALL)
    s = src.samples("val")[0]
    image = load(s.image)
    scene, _ = src.scene("val", 0)
    colour = scene.objects[0].colour
    odd = dataclasses.replace(s, expression=f"hmm, point me at something {colour}-ish please")
    star = dataclasses.replace(s, expression="the purple star")
    p_odd, p_star = ShapesReasoner().predict(image, [odd, star])
    assert p_odd.parse_status is ParseStatus.OK and "cannot parse" in (p_odd.reasoning or "")
    assert masks.area(p_odd.mask) > 0  # type: ignore[arg-type]
    assert p_star.box is None and masks.area(p_star.mask) == 0  # type: ignore[arg-type]
    assert p_star.answer == '{"bbox_2d": []}'


def test_reasoner_takes_no_options() -> None:
    with pytest.raises(TypeError):
        ShapesReasoner(threshold=3)
