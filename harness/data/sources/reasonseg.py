"""ReasonSeg (dvlab-research/LISA; UPSTREAM 2.2): a LabelMe-style JSON beside each image.

Layout under the data root (LISA's README; LENS ``eval/evaluate_reasonseg.py`` reads it)::

    reason_seg/ReasonSeg/{train,val,test}/<name>.jpg + <name>.json

JSON: ``text`` (queries), ``is_sentence`` (long vs short query), ``shapes`` (``label``,
``points``). The ground truth is LISA's ``utils/data_processing.py get_mask_from_json``,
reproduced pixel for pixel with the same OpenCV calls: shapes labelled "flag" are skipped;
each remaining polygon's area is measured by drawing it (``polylines`` + ``fillPoly`` on
int32 points); polygons are drawn largest first (``np.argsort(areas)[::-1]``) with value
255 when the label contains "ignore" and 1 otherwise, so a smaller polygon overwrites a
larger one. The final map gives ``mask`` (value 1) and ``ignore`` (value 255), disjoint.
The image size is read from the image file's header, as decoded by ``harness.data.images``
under the suite's ``exif`` convention: LISA sizes the mask from ``cv2.imread``'s image, which
is turned upright by the EXIF Orientation tag, so under ``exif: apply`` (the suite's) a
rotated image's mask is drawn at the upright size (orientations 5-8 swap width and height).

Samples: ``first_text`` (the suite default: LISA, LENS and Seg-Zero use ``text[0]``) gives
one sample per image, id ``reasonseg/{folder}/{stem}``; ``sentence`` gives every text,
id ``reasonseg/{folder}/{stem}/{i}``. ``subset: short|long`` keeps images whose
``is_sentence`` is False|True (LISA's test-short/test-long). ``text: raw`` feeds the text
as stored (LENS), ``lisa_strip`` strips it (LISA's ``.strip()``).
The box is the tight box of the target mask (ReasonSeg has no box annotation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness import masks
from harness.data.images import ImageError, header
from harness.data.sources import SourceError
from harness.data.sources.filesource import Expected, FileSource
from harness.types import GroundTruth, Sample

PUBLISHED = "LISA README: ReasonSeg (Google Drive / OpenXLab links), 1,218 images: train 239, val 200, test 779"


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise SourceError("ReasonSeg ground truth is rasterised with OpenCV exactly as LISA does: install opencv-python-headless "
                          "(pip install 'harness-seg[reasonseg]')") from None
    return cv2


def read_labelme(path: Path) -> dict[str, Any]:
    """LISA reads UTF-8 and falls back to cp1252."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc})") from exc
    try:
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            data = json.loads(raw.decode("cp1252"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object with 'text', 'is_sentence' and 'shapes'")
    if not isinstance(data.get("shapes"), list) or any(not isinstance(s, dict) or "label" not in s or "points" not in s
                                                         for s in data["shapes"]):
        raise SourceError(f"{path}: 'shapes' must be a list of objects with 'label' and 'points'")
    texts = data.get("text")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise SourceError(f"{path}: 'text' must be a non-empty list of strings")
    if not isinstance(data.get("is_sentence"), bool):
        raise SourceError(f"{path}: 'is_sentence' must be true or false")
    return data


def rasterise(shapes: list[dict[str, Any]], height: int, width: int, where: str) -> np.ndarray:
    """The uint8 map of ``get_mask_from_json``: 0 background, 1 target, 255 ignore."""
    cv2 = _cv2()
    valid, areas = [], []
    try:
        for shape in shapes:
            if str(shape["label"]).lower() == "flag":  # deprecated annotations
                continue
            pts = np.array([shape["points"]], dtype=np.int32)
            tmp = np.zeros((height, width), dtype=np.uint8)
            cv2.polylines(tmp, pts, True, 1, 1)
            cv2.fillPoly(tmp, pts, 1)
            areas.append(tmp.sum())
            valid.append((shape, pts))
        order = list(np.argsort(areas)[::-1].astype(np.int32))
        out = np.zeros((height, width), dtype=np.uint8)
        for i in order:
            shape, pts = valid[i]
            value = 255 if "ignore" in str(shape["label"]).lower() else 1
            cv2.polylines(out, pts, True, value, 1)
            cv2.fillPoly(out, pts, value)
    except (cv2.error, ValueError, TypeError) as exc:
        raise SourceError(f"{where}: a polygon cannot be drawn ({type(exc).__name__}: {exc})") from exc
    return out


def image_size(path: Path, exif: str) -> tuple[int, int, int | None]:
    """(height, width, EXIF orientation) from the header (``harness.data.images.header``)."""
    try:
        return header(path, exif, orientation=True)  # recorded in meta, and noted when ignored
    except ImageError as exc:
        raise SourceError(str(exc)) from exc


class ReasonSegSource(FileSource):
    FORMAT = "reasonseg"
    VERSION = 1
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "root": "reason_seg/ReasonSeg",
        "folder": None,  # default: the suite's split name
        "subset": "all",  # all | short | long
        "text": "raw",  # raw | lisa_strip
    }

    def spec(self, split: str) -> dict[str, Any]:
        spec = super().spec(split)
        spec["folder"] = spec["folder"] or split
        if spec["subset"] not in ("all", "short", "long"):
            raise SourceError(f"source parameter subset={spec['subset']!r} is not one of all, short, long")
        if spec["text"] not in ("raw", "lisa_strip"):
            raise SourceError(f"source parameter text={spec['text']!r} is not one of raw, lisa_strip")
        return spec

    def _images(self, spec: dict[str, Any]) -> list[Path]:
        folder = self.path(Path(spec["root"]) / spec["folder"])
        if not folder.is_dir():
            raise SourceError(f"ReasonSeg folder {folder} does not exist (see `harness data layout reasonseg`)")
        images = sorted(folder.glob("*.jpg"))
        if not images:
            raise SourceError(f"ReasonSeg folder {folder} holds no .jpg images")
        return images

    def annotation_files(self, split: str) -> list[Path]:
        # The image files count too: LISA sizes the mask from the decoded image.
        return [p for img in self._images(self.spec(split)) for p in (img.with_suffix(".json"), img)]

    def expected(self, split: str) -> list[Expected]:
        spec = self.spec(split)
        return [Expected(f"{Path(spec['root']).as_posix()}/{spec['folder']}/", "<name>.jpg + <name>.json (LabelMe polygons, text)",
                         PUBLISHED, "dir")]

    def cache_spec(self, split: str, spec: dict[str, Any]) -> dict[str, Any]:
        # The mask is drawn at the image's size, which the exif convention decides.
        return {**super().cache_spec(split, spec), "exif": self.conventions.exif}

    def build(self, split: str, spec: dict[str, Any]) -> tuple[list[Sample], list[str]]:
        out: list[Sample] = []
        notes: list[str] = []
        rotated = []
        for img in self._images(spec):
            jpath = img.with_suffix(".json")
            data = read_labelme(jpath)
            if spec["subset"] != "all" and data["is_sentence"] != (spec["subset"] == "long"):
                continue
            h, w, orientation = image_size(img, self.conventions.exif)
            value = rasterise(data["shapes"], h, w, str(jpath))
            mask = masks.encode(value == 1)
            ignore = masks.encode(value == 255) if (value == 255).any() else None
            gt = GroundTruth(mask=mask, box=masks.mask_box(mask), ignore=ignore)
            stem = img.stem
            meta: dict[str, Any] = {"object": stem, "is_sentence": data["is_sentence"], "n_texts": len(data["text"]),
                                    "text": spec["text"], "box_from": "mask"}
            if orientation not in (None, 1):
                meta["exif_orientation"] = orientation
                rotated.append(img.name)
            texts = data["text"] if self.conventions.sample_unit == "sentence" else data["text"][:1]
            for i, text in enumerate(texts):
                sid = f"reasonseg/{spec['folder']}/{stem}" + (f"/{i}" if self.conventions.sample_unit == "sentence" else "")
                out.append(Sample(id=sid, image=str(img), expression=text.strip() if spec["text"] == "lisa_strip" else text,
                                  gt=gt, dataset="reasonseg", split=split, meta={**meta, "text_index": i}))
        if rotated and self.conventions.exif == "ignore":
            notes.append(f"ReasonSeg {spec['folder']}: {len(rotated)} image(s) carry an EXIF rotation ({', '.join(rotated[:3])}...): "
                         "LISA's cv2.imread applies it, this suite does not (exif: ignore), so their polygons may not line up")
        return out, notes
