"""RefCOCO, RefCOCO+ and RefCOCOg in the REFER format (lichengunc/refer; UPSTREAM 2.1).

Files, under the data root (LISA's README layout, which LENS and EVF-SAM read too)::

    refer_seg/{dataset}/refs({split_by}).p     pickled list of refs (Python 2 pickle)
    refer_seg/{dataset}/instances.json         COCO images / annotations / categories
    refer_seg/images/mscoco/images/train2014/COCO_train2014_{image_id:012d}.jpg

A ref is one object (``ann_id``) of one image with its sentences. Split selection follows
REFER's ``getRefIds``: ``testA``/``testB`` match refs whose split contains the letter,
``test`` every split containing "test", others by equality. Samples keep the pickle's
order of refs, then of sentences.

Ground truth is LISA's (``utils/dataset.py`` ValDataset): ``frPyObjects`` over the
annotation's polygons, polygons summed (``harness.data.sources.gt``); the box is the
annotation's COCO ``bbox`` (REC's box). The pickle loads through ``harness.data.safe_pickle``.

Expression text (``text``): ``raw`` = ``sent["sent"]`` unchanged (LENS, Sa2VA; default),
``lisa_lower`` = ``sent["sent"].strip().lower()`` (LISA, GLaMM, EVF-SAM), ``sent_raw`` =
the sentence's original ``raw`` field (ReLA). ``meta["sent"]`` always keeps ``sent["sent"]``
and ``meta["text"]`` names the normalisation used.

False premises (``false_premise: true``; FP-RefCOCO(+/g), SESAME's ``dataloaders/test_dataset.py``): a
sentence with ``is_false_premise`` true (or, without that key, ``exist`` false) names an object the image
does not hold: a no-target sample whose ground truth is an empty mask (SESAME's zero mask), with
``meta["premise"]`` and the true sentence it was made from (``gt_sent``) kept for slices, never given to
a model.

Sample unit: ``sentence`` (default) gives one sample per sentence, id
``{dataset}/{split_by}/{split}/{ref_id}/{sent_id}``; ``object`` and ``first_text`` give one
per ref with its first sentence, id ``{dataset}/{split_by}/{split}/{ref_id}``.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness import masks
from harness.data import safe_pickle
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.data.sources.gt import SegmentationError, ground_truth, xywh_to_xyxy
from harness.types import GroundTruth, Sample

COCO_TRAIN2014 = "refer_seg/images/mscoco/images/train2014"
REFER_PUBLISHED = ("lichengunc/refer README: refcoco.zip, refcoco+.zip, refcocog.zip (refs pickles + instances.json); "
                   "LISA README links the same files")
COCO_PUBLISHED = "COCO 2014 train images (train2014.zip, cocodataset.org)"
TEXT_MODES = ("raw", "lisa_lower", "sent_raw")

_LOADED: dict[tuple[str, int, int], Any] = {}


def memo_load(path: Path, loader: Any) -> Any:
    """Load a large annotation file once per process (splits of one dataset share it)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        while len(_LOADED) >= 2:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = loader(path)
    return _LOADED[key]


def read_json(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SourceError(f"{path}: file does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: malformed JSON ({exc})") from exc


class CocoInstances:
    """The parts of a COCO ``instances.json`` the readers need: images and annotations by id."""

    def __init__(self, path: Path) -> None:
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
            raise SourceError(f"{path}: not a COCO instances file (needs 'images' and 'annotations' lists)")
        self.path = path
        try:
            self.images = {int(im["id"]): im for im in data["images"]}
            self.anns = {int(a["id"]): a for a in data["annotations"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{path}: an image or annotation lacks an integer 'id' ({exc})") from exc

    def image(self, image_id: int, where: str) -> dict[str, Any]:
        im = self.images.get(int(image_id))
        if im is None:
            raise SourceError(f"{where}: image {image_id} is not in {self.path}")
        if not isinstance(im.get("height"), int) or not isinstance(im.get("width"), int):
            raise SourceError(f"{self.path}: image {image_id} lacks integer 'height' and 'width'")
        return im

    def ann(self, ann_id: int, where: str) -> dict[str, Any]:
        ann = self.anns.get(int(ann_id))
        if ann is None:
            raise SourceError(f"{where}: annotation {ann_id} is not in {self.path}")
        return ann


def read_pickle(path: Path) -> Any:
    """A data pickle through the restricted unpickler (nothing in it is executed)."""
    try:
        return safe_pickle.load(path)
    except safe_pickle.UnsafePickleError as exc:
        raise SourceError(str(exc)) from None


def load_instances(path: Path) -> CocoInstances:
    return memo_load(path, CocoInstances)  # type: ignore[no-any-return]


def refer_split_match(ref_split: str, split: str) -> bool:
    """REFER ``getRefIds(split=...)`` semantics."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def normalise(sent: dict[str, Any], mode: str) -> str:
    text = str(sent.get("sent", ""))
    if mode == "lisa_lower":
        return text.strip().lower()
    if mode == "sent_raw":
        return str(sent.get("raw", text))
    return text


def default_split_by(dataset: str) -> str:
    return "umd" if dataset == "refcocog" else "unc"  # LISA ValDataset's rule


def image_path(root_dir: Path, im: dict[str, Any], image_id: int) -> Path:
    name = im.get("file_name") or f"COCO_train2014_{int(image_id):012d}.jpg"
    return root_dir / Path(str(name)).name


def sentences_of(ref: dict[str, Any], unit: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(sent_id or None, sentence) per sample of one ref under the sample unit."""
    sents = ref["sentences"]
    if unit == "sentence":
        return [(str(s.get("sent_id", i)), s) for i, s in enumerate(sents)]
    if unit == "object_merged" and sents:
        return [(None, merged_sentence(sents))]
    return [(None, sents[0])] if sents else []


def merged_sentence(sents: list[dict[str, Any]]) -> dict[str, Any]:
    """All of an object's sentences as one (HiMTok eval/seg_dataset.py ``ReferSegDataset``, ``text_mode='all'``):
    ``Meet all the descriptions: 1. s1. 2. s2. `` with each ``sent`` as stored, the trailing space included.
    ``raw`` is built the same way from the raw texts, for ``text: sent_raw``."""
    def join(key: str) -> str:
        return "Meet all the descriptions: " + "".join(f"{i + 1}. {s.get(key, s.get('sent', ''))}. " for i, s in enumerate(sents))
    return {"sent": join("sent"), "raw": join("raw"), "sent_ids": [s.get("sent_id") for s in sents]}


def drawn_per_image(samples: list[Sample], per_image: int, seed: int) -> list[Sample]:
    """GLaMM's sampling (groundingLMM dataset/segm_datasets/RefCOCO_Segm_ds.py ``ReferSegmDataset.__getitem__``):
    per image, its sentences over its refs in order, and when there are at least ``per_image`` of them,
    ``np.random.choice(range(n), size=per_image, replace=False)`` of them, else all. GLaMM's draw is unseeded;
    here each image's generator is ``RandomState(crc32(f"{seed}:{image file name}"))``, the seeding the GLaMM
    adapter's own protocol uses, so one seed is one fixed, reproducible subset. Samples keep their order."""
    by_image: dict[str, list[int]] = {}
    for k, s in enumerate(samples):
        by_image.setdefault(s.image, []).append(k)
    keep: set[int] = set()
    for image, ks in by_image.items():
        if len(ks) >= per_image:
            rng = np.random.RandomState(zlib.crc32(f"{seed}:{Path(image).name}".encode()) & 0x7FFFFFFF)
            keep.update(ks[int(i)] for i in rng.choice(list(range(len(ks))), size=per_image, replace=False))
        else:
            keep.update(ks)
    return [s for k, s in enumerate(samples) if k in keep]


def false_premise(sent: dict[str, Any]) -> bool:
    """SESAME's reading of a sentence (dataloaders/test_dataset.py): ``is_false_premise`` first, then
    ``exist``; a sentence with neither names an object that is there."""
    if "is_false_premise" in sent:
        return bool(sent["is_false_premise"])
    if "exist" in sent:
        return not sent["exist"]
    return False


class ReferSource(FileSource):
    FORMAT = "refer"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "dataset": "refcoco",
        "split_by": None,  # default: umd for refcocog, unc otherwise
        "split": None,  # default: the suite's split name
        "text": "raw",
        "refer_root": "refer_seg",
        "image_dir": COCO_TRAIN2014,
        "refs_file": None,  # default: {refer_root}/{dataset}/refs({split_by}).p
        "instances_file": None,  # default: {refer_root}/{dataset}/instances.json
        # FP-RefCOCO(+/g) (SESAME): a sentence flagged ``is_false_premise: true`` (or ``exist: false``) names
        # an object that is not in the image: a no-target sample with an empty ground truth.
        "false_premise": False,
        # GLaMM's protocol (``glamm-3``): at most this many sentences per image, drawn with ``draw_seed``
        # (``drawn_per_image``); None: every sample.
        "per_image": None,
        "draw_seed": 0,
    }
    SAMPLE_UNITS: ClassVar[tuple[str, ...]] = ("sentence", "first_text", "object", "object_merged")

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        spec["split_by"] = spec["split_by"] or default_split_by(spec["dataset"])
        if not spec["false_premise"]:  # left out when off, so every other REFER suite keeps its data digest
            del spec["false_premise"]
        if spec["per_image"] is None:  # the same: only a drawing suite's digest says how it draws
            del spec["per_image"], spec["draw_seed"]
        elif not isinstance(spec["per_image"], int) or isinstance(spec["per_image"], bool) or spec["per_image"] < 1 \
                or not isinstance(spec["draw_seed"], int):
            raise SourceError(f"source parameters per_image={spec['per_image']!r} and draw_seed={spec['draw_seed']!r} "
                              "must be a positive integer and an integer")
        if spec["text"] not in TEXT_MODES:
            raise SourceError(f"source parameter text={spec['text']!r} is not one of {', '.join(TEXT_MODES)}")
        return spec

    def _files(self, spec: dict[str, Any]) -> tuple[Path, Path]:
        base = Path(spec["refer_root"]) / spec["dataset"]
        refs = spec["refs_file"] or base / f"refs({spec['split_by']}).p"
        inst = spec["instances_file"] or base / "instances.json"
        return self.path(refs), self.path(inst)

    def annotation_files(self, split: str) -> list[Path]:
        return list(self._files(self.spec(split)))

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        base = Path(spec["refer_root"]) / spec["dataset"]
        return [
            Expected(Path(spec["refs_file"] or base / f"refs({spec['split_by']}).p").as_posix(),
                     f"{spec['dataset']} refs, splitBy {spec['split_by']} (pickle)", REFER_PUBLISHED),
            Expected(Path(spec["instances_file"] or base / "instances.json").as_posix(),
                     f"{spec['dataset']} COCO annotations (polygons)", REFER_PUBLISHED),
            Expected(Path(spec["image_dir"]).as_posix() + "/", "COCO_train2014_{image_id:012d}.jpg", COCO_PUBLISHED, "dir"),
        ]

    def load_refs(self, path: Path) -> list[dict[str, Any]]:
        return check_refs(memo_load(path, read_pickle), path)

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        refs_path, inst_path = self._files(spec)
        refs = self.load_refs(refs_path)
        inst = load_instances(inst_path)
        img_dir = self.path(spec["image_dir"])
        prefix = f"{spec['dataset']}/{spec['split_by']}/{spec['split']}"
        unit = self.conventions.sample_unit
        out: list[Sample] = []
        notes: list[str] = []
        for ref in refs:
            if not refer_split_match(str(ref["split"]), spec["split"]):
                continue
            where = f"{refs_path} (ref {ref['ref_id']})"
            im = inst.image(ref["image_id"], where)
            ann = inst.ann(ref["ann_id"], where)
            h, w = im["height"], im["width"]
            try:
                gt = ground_truth(ann.get("segmentation", []), h, w, box=xywh_to_xyxy(ann.get("bbox")))
            except SegmentationError as exc:
                raise SourceError(f"{inst_path}: annotation {ref['ann_id']}: {exc}") from exc
            meta_base: dict[str, Any] = {"object": str(ref["ref_id"]), "ref_id": ref["ref_id"], "ann_id": ref["ann_id"],
                                         "image_id": ref["image_id"], "category_id": ref.get("category_id"), "text": spec["text"]}
            if not ann.get("segmentation"):
                meta_base["empty_segmentation"] = True
                notes.append(f"{inst_path}: annotation {ref['ann_id']} has no segmentation; its target is empty")
            image = str(image_path(img_dir, im, ref["image_id"]))
            out.extend(self._samples_of(ref, prefix, unit, image, gt, spec, split, meta_base))
        if not out:
            raise SourceError(f"{refs_path}: no ref has split {spec['split']!r}")
        if spec.get("per_image") is not None:
            out = drawn_per_image(out, int(spec["per_image"]), int(spec["draw_seed"]))
        return out, notes

    def _samples_of(self, ref: dict[str, Any], prefix: str, unit: str, image: str, gt: GroundTruth,
                    spec: dict[str, Any], split: str, meta_base: dict[str, Any]) -> list[Sample]:
        out = []
        for sent_id, sent in sentences_of(ref, unit):
            meta = {**meta_base, "sent": sent.get("sent", "")}
            absent = spec.get("false_premise", False) and false_premise(sent)
            if spec.get("false_premise", False):
                meta["premise"] = "false" if absent else "true"
                if sent.get("gt_sent"):
                    meta["gt_sent"] = sent["gt_sent"]
            if sent_id is None:
                sid = f"{prefix}/{ref['ref_id']}"
                meta["sent_ids"] = [s.get("sent_id") for s in ref["sentences"]]
            else:
                sid = f"{prefix}/{ref['ref_id']}/{sent_id}"
                meta["sent_id"] = sent.get("sent_id")
            target = GroundTruth(mask=masks.empty(gt.height, gt.width)) if absent else gt
            out.append(Sample(id=sid, image=image, expression=normalise(sent, spec["text"]), gt=target,
                              dataset=spec["dataset"], split=split, no_target=bool(absent), meta=meta))
        return out


def check_refs(refs: Any, path: Path) -> list[dict[str, Any]]:
    """The refs of a REFER-style file (refs(...).p, grefs(...).json), checked field by field."""
    if not isinstance(refs, list):
        kind = "a pickled list" if path.suffix == ".p" else "a list"
        raise SourceError(f"{path}: expected {kind} of refs, got {type(refs).__name__}")
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise SourceError(f"{path}: ref #{i} is a {type(ref).__name__}, not a dict")
        lacking = [k for k in ("ref_id", "ann_id", "image_id", "split", "sentences") if k not in ref]
        if lacking:
            raise SourceError(f"{path}: ref #{i} lacks {', '.join(lacking)}")
        if not isinstance(ref["sentences"], list) or any(not isinstance(s, dict) for s in ref["sentences"]):
            raise SourceError(f"{path}: ref {ref['ref_id']} has malformed 'sentences' (a list of dicts is expected)")
    return refs
