"""The one interface every model is wrapped behind.

An adapter is constructed with its options (from the run config), ``load``-ed once, then
asked to ``predict`` batches of queries that share one image: the runner decodes the image
once and hands the pixels over, so an adapter that encodes images (SAM, a ViT) can do it
once per image. An adapter that declares ``multi_image`` is given batches spanning several
images through ``predict_many`` instead. A query (``harness.types.Query``) is a sample without its answer: id, image,
expression, dataset, split and the metadata a model may use. Only an oracle
(``AdapterInfo.oracle``, e.g. ``oracle-box``) is given the full Sample with its ground truth,
and only in-process: a worker refuses to serve one. It declares what it outputs and in which coordinate space its boxes are;
the runner converts boxes to original pixels, so an adapter never guesses.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from harness.types import Box, Prediction, Query

BoxSpace = Literal["pixel", "norm1", "norm1000"]


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter produces.

    ``box_space``: ``pixel`` (original image pixels), ``norm1`` ([0, 1] of width/height) or
    ``norm1000`` ([0, 1000], Qwen2-VL style). A model that answers in the pixels of a resized
    input (Qwen2.5-VL, Seg-Zero's 840x840) rescales in its adapter, as upstream does, and
    declares ``pixel``. ``outputs`` lists which of mask, box, text, reasoning it produces.
    ``oracle``: the adapter is a reference point computed from the answer, not a model; its
    ``predict`` is given full Samples (ground truth included) and it runs only in-process.
    """

    name: str
    description: str
    outputs: tuple[str, ...] = ("mask",)
    box_space: BoxSpace = "pixel"
    version: str = "1"
    checkpoints: tuple[str, ...] = field(default_factory=tuple)
    oracle: bool = False
    reference: bool = False


class Adapter(ABC):
    """Base class of all adapters. Subclasses set ``info`` and implement ``predict``.

    What the engine asks of an adapter besides ``predict`` is declared here, each with its default;
    an adapter overrides what it has (a class attribute, or in ``__init__`` when it depends on its
    options, as LENS's ``multi_image`` does). Nothing else is looked for.
    """

    info: ClassVar[AdapterInfo]
    # True for an adapter that decodes ``queries[0].image`` itself (a proxy for a model in a worker):
    # the engine then reads only the file's header for its size, and passes an (h, w, 0) array.
    decodes_images: bool = False
    # The suite's EXIF convention (``Conventions.exif``), set by the runner before ``load``: what an
    # adapter that decodes images itself decodes them by.
    exif: str = "ignore"
    # True for an adapter whose ``predict_many`` runs several images in one model call: the engine
    # then fills each batch with up to --batch-size samples spanning several images.
    multi_image: bool = False
    # True for an adapter with CPU work per image (resizes, normalisation) that ``prepare_image`` does
    # ahead: the engine calls it in its decode-ahead thread (in process, and in a worker's reader
    # thread) on the very array it later passes to ``predict``, while the model runs the batch before.
    prepares_images: bool = False
    # True for an adapter whose calls wait on something outside the interpreter (an accelerator): in process the
    # engine runs its calls on a thread of its own, so that the model works while the engine scores and logs the
    # last batch (harness.run.callers). False for one whose calls are all Python and NumPy work here (the
    # reference points, replay, the shapes reasoner): holding the GIL throughout, it would overlap nothing and pay
    # the hand-offs (3% of an oracle-box run, measured), so it is called in the engine's thread.
    model_thread: bool = True
    # Batches the engine may send (``send``) before it reads the first answer (``receive``): more than 1
    # only for an adapter whose calls run elsewhere (a worker proxy), so the next batch is on its way
    # while the engine scores and logs the last.
    pipeline_window: int = 1

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"adapter {self.info.name!r} takes no options, got {', '.join(sorted(options))}")
        self.options: dict[str, Any] = {}

    def prepare_image(self, image: np.ndarray) -> None:  # noqa: B027 (optional hook, not abstract)
        """Do this image's CPU work now and keep it for the ``predict`` call given this array (the same
        object). Runs in another thread than ``predict``: no accelerator work, no model state. It is an
        optimisation only: a failure here is ignored, and ``predict`` must give the same answer without it."""

    def check(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Cheap checks, before any model of the run predicts: raise a HarnessError naming what is wrong.

        The runner builds and checks every model of a run first (harness.run.preflight), so a
        missing file named by an option fails the command at once, not after the models before
        it have run for hours. Check that the files your options name exist and are readable;
        never load weights here (models load one at a time, as they run).
        """

    def load(self, device: str = "cpu") -> None:  # noqa: B027 (optional hook, not abstract)
        """Load weights once, before the first batch. Weight-free adapters do nothing."""

    @abstractmethod
    def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
        """Predict one Prediction per query; every query shares ``image`` (h, w, 3 uint8 RGB).

        Boxes are in ``info.box_space``; masks are RLE at the original resolution. Raise for
        a failure of the whole batch: the runner records each of its samples as failed. An
        oracle (``info.oracle``) is given the Samples themselves, ground truth included.

        In process, ``predict`` and ``predict_many`` run on the engine's model thread (one per split,
        harness.run.callers; unless ``model_thread`` is False), not the thread that called ``load``: the CUDA device ``load`` was given
        and the loading thread's current stream are selected there, and torch's per-thread state
        (grad mode, inference mode, autocast) is set inside the call, as every adapter here does.
        """

    def predict_many(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> list[list[Prediction]]:
        """Predict for several images at once: one list of Predictions per ``(image, queries)`` item, in order.

        Called only when ``multi_image`` is True (the batch then spans images; an image's queries
        may be split across two calls when they do not fit). The default loops over ``predict``,
        so declaring ``multi_image`` without overriding this only batches the calls; override it
        to put every image's sentences into one forward pass. Raise for a failure of the whole
        call: every sample of every item is then recorded as failed (and halved on out-of-memory).
        """
        return [self.predict(image, queries) for image, queries in items]

    def inputs(self, image: np.ndarray, query: Query) -> dict[str, Any]:
        """What the model is shown for ``query``, for ``harness inputs`` (reviewable without a GPU).

        Return one entry per component: the exact prompt text the model receives (after its
        chat template) and hashes, or the arrays themselves, of the preprocessed inputs (resized
        and normalised pixel tensors, token ids). ``harness inputs`` hashes every value (text,
        bytes, numpy arrays, JSON values; convert tensors with ``.cpu().numpy()``) and diffs them
        per component, so a change to a template, a resize or a normalisation shows up in review.
        It is called without ``load()``: load only what preprocessing needs (tokenizer, image
        processor), never weights. The default is the expression as given and a hash of the
        decoded image (shape, dtype and bytes); override it when the model sees anything else.
        """
        h = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return {"prompt": query.expression, "image": f"sha256:{h.hexdigest()}"}

    def send(self, items: Sequence[tuple[np.ndarray, Sequence[Query]]]) -> None:
        """Start one batch without waiting for it (only with ``pipeline_window`` > 1); ``receive`` answers
        the batches sent, in order, as ``predict_many`` would."""
        raise NotImplementedError(f"adapter {self.info.name!r} does not pipeline (pipeline_window is 1)")

    def receive(self) -> list[list[Prediction]]:
        raise NotImplementedError(f"adapter {self.info.name!r} does not pipeline (pipeline_window is 1)")

    def replay_ids(self) -> set[str] | None:
        """For an adapter that replays stored predictions: the ids it holds (after ``check``), which the
        runner checks against the suite's samples before any model predicts. None for a model."""
        return None

    def runtime_info(self) -> dict[str, Any]:
        """Where the model runs when not in this process (interpreter, environment, versions, log), for
        the manifest; {} in process."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Free what the model holds (weights, GPU memory, a worker process) once the runner is done with
        it; a later ``load`` may start again. Called after an error too."""

    def config(self) -> dict[str, Any]:
        """What identifies this adapter's behaviour, for the run's fingerprint."""
        return {"adapter": self.info.name, "version": self.info.version, "options": self.options}

    def stats(self) -> dict[str, float]:
        """Cumulative efficiency counters since construction, so that cost claims can be checked.

        Report what only the model knows, e.g. ``segmenter_images`` (images encoded by the
        segmenter: one per image when its embedding is reused across sentences),
        ``generated_tokens``, ``forward_passes``, ``peak_gpu_memory_bytes``. Names starting
        with ``peak_`` are maxima (merged with ``max`` across worker restarts and shards);
        all others are sums. Called after every batch in an isolated worker: keep it cheap.
        The engine adds its own counters (samples, batches, seconds; see harness.run.remote).
        """
        return {}


def box_to_pixels(box: Box, space: BoxSpace, width: int, height: int) -> Box:
    """Convert a box from an adapter's declared space to original pixels [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if space == "pixel":
        sx = sy = 1.0
    elif space == "norm1":
        sx, sy = float(width), float(height)
    elif space == "norm1000":
        sx, sy = width / 1000.0, height / 1000.0
    else:
        raise ValueError(f"unknown box space {space!r}")
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def box_from_pixels(box: Box, space: BoxSpace, width: int, height: int) -> Box:
    """The inverse of ``box_to_pixels``: a box of original pixels in an adapter's declared space (what
    the model answered, for a reader comparing the report with the model's own text)."""
    sx, sy = box_to_pixels((1.0, 1.0, 1.0, 1.0), space, width, height)[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 / sx, y1 / sy, x2 / sx, y2 / sy)
