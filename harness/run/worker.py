"""``python -m harness.run.worker``: one adapter in its own interpreter, driven over stdin/stdout.

Models of this field cannot share an environment (UPSTREAM 3.9), so each may run in its own
virtualenv as this worker. The protocol is one JSON object per line, one reply per request,
in order; every reply has ``ok`` and echoes the request's ``id``. The parent may send the next
request before reading the previous reply (harness.run.remote keeps a window in flight); replies
stay in request order. The model runs in the main thread: a reader thread takes the next requests
off the pipe, checks them and decodes (and prepares) their images while the model runs
(harness.run.requests), so between two calls the main thread only writes the last reply and takes
the next ready request. The reply is written before the next call starts, on purpose: a worker
that dies on a batch (a segfault, the OOM killer) has then answered every batch before it, and
the parent fails exactly the batch it died on. (Encoding and writing in another thread would save
about 0.1 ms a batch of 8, and lose an answer still queued when the next call kills the process.)

    {"op": "hello", "protocol": 3, "adapter": "NAME[:ARG]", "options": {...}}   (builds the adapter, runs its check())
        -> {"ok": true, "protocol": 3, "info": {...AdapterInfo}, "multi_image": BOOL, "config": {...}, "runtime": {...}}
    {"op": "load", "device": "cuda:0"}                     -> {"ok": true, "runtime": {...}}
    {"op": "predict", "image": PATH, "queries": [QUERY, ...]}
        -> {"ok": true, "predictions": [Prediction.to_json(), ...], "stats": {...}}
           (a prediction's ``instances``, when the model gives them: [{"mask": RLE, "score": float, "box"?}, ...])
    {"op": "predict_many", "items": [{"image": PATH, "queries": [QUERY, ...]}, ...]}   (a multi_image adapter)
        -> {"ok": true, "predictions": [[Prediction.to_json(), ...], ...], "stats": {...}}
    {"op": "stats"}                                        -> {"ok": true, "stats": {...}}
    {"op": "shutdown"}                                     -> {"ok": true}, then exit 0
    any failure                                            -> {"ok": false, "error": MSG, "type": EXC_NAME}

The worker decodes the image from its path, so pixels never cross the pipe. A QUERY is
``{"id", "image", "expression", "dataset", "split", "meta"}`` (harness.types.Query): no ground
truth crosses the pipe, and a request that carries any other field, or a meta key outside
``QUERY_META``, is refused. An oracle adapter (``AdapterInfo.oracle``) needs the ground truth, so
a worker refuses to serve one: oracles run in-process. Boxes come back in
the adapter's declared space and masks unchecked: the parent finalizes predictions exactly
as for an in-process adapter. Stdout is the protocol channel only: at start-up the real fd 1
is kept private and fd 1 is pointed at stderr, so prints of any library (C included) land in
the log. A malformed or oversized request gets an error reply, never a crash.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import IO, Any

import harness
from harness.adapter import Adapter
from harness.run.batches import prepared
from harness.run.requests import ProtocolError, Reader, Ready, read_request  # noqa: F401 (read_request: re-exported)
from harness.types import QUERY_META, Prediction, Query

PROTOCOL = 3  # 3: predict_many, pipelined requests; 2: queries without ground truth (1 sent every sample's ground truth)
MAX_LINE_BYTES = 64 * 1024 * 1024  # requests and replies; a batch of RLE masks is far smaller
MAX_SAMPLES = 4096


QUERY_FIELDS = ("id", "image", "expression", "dataset", "split", "meta")


def query_to_json(q: Query) -> dict[str, Any]:
    """A Query's protocol form: its fields and nothing else (a Sample has no business here)."""
    if not isinstance(q, Query):
        raise TypeError(f"the worker protocol carries Query objects, not {type(q).__name__} (use Sample.query())")
    return {"id": q.id, "image": q.image, "expression": q.expression, "dataset": q.dataset, "split": q.split, "meta": q.meta}


def _str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: {key!r} must be a string")
    return value


def query_from_json(data: Any, where: str) -> Query:
    """A Query from its protocol form, checking every field (a request is untrusted input).

    A field other than the Query's (``gt``, ``no_target``) or a meta key outside QUERY_META is
    refused, not dropped: it means the caller sends what a model must not be given.
    """
    if not isinstance(data, dict):
        raise ProtocolError(f"{where} must be an object")
    extra = sorted(set(data) - set(QUERY_FIELDS))
    if extra:
        what = "is not a query field" if len(extra) == 1 else "are not query fields"
        raise ProtocolError(f"{where}: {', '.join(map(repr, extra))} {what} (a query carries no ground truth)")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise ProtocolError(f"{where}: 'meta' must be an object")
    hidden = sorted(set(meta) - QUERY_META)
    if hidden:
        raise ProtocolError(f"{where}: meta key(s) {', '.join(map(repr, hidden))} are not given to models")
    return Query(id=_str(data, "id", where), image=_str(data, "image", where), expression=_str(data, "expression", where),
                 dataset=_str(data, "dataset", where), split=_str(data, "split", where), meta=meta)


def runtime_info(adapter_spec: str | None = None) -> dict[str, Any]:
    """Where the model really ran: interpreter, environment, and the versions that matter."""
    from harness.records.manifest import package_versions
    from harness.registry import all_adapters, split_model_name

    versions = package_versions()
    if adapter_spec:
        origin = all_adapters().get(split_model_name(adapter_spec)[0])
        if origin is not None and origin.origin not in ("builtin", "test"):
            try:
                versions[origin.origin] = version(origin.origin)
            except PackageNotFoundError:
                pass
    return {"python": sys.executable, "prefix": sys.prefix, "pid": os.getpid(), "harness": harness.__version__, "versions": versions}


def peak_gpu_memory() -> float | None:
    """Peak CUDA memory of this process, only when the model already initialised CUDA."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return float(max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count())))
    except Exception:
        return None


class Worker:
    """The state behind the protocol: one adapter and its counters."""

    def __init__(self) -> None:
        self.adapter: Adapter | None = None
        self.spec: str | None = None
        self.counters: dict[str, float] = {"samples": 0, "batches": 0, "images": 0, "predict_seconds": 0.0}

    def handle(self, req: dict[str, Any], ready: Ready | None = None) -> dict[str, Any]:
        """The reply's content; a predict request comes with what the reader made ready for it."""
        op = req.get("op")
        if op == "hello":
            return self.hello(req)
        if op == "shutdown":
            return {}
        if self.adapter is None:
            raise ProtocolError(f"op {op!r} before hello" if op in ("load", "predict", "predict_many", "stats") else f"unknown op {op!r}")
        if op == "load":
            device = req.get("device", "cpu")
            if not isinstance(device, str):
                raise ProtocolError("'device' must be a string")
            self.adapter.load(device)
            return {"runtime": runtime_info(self.spec)}
        if op in ("predict", "predict_many"):
            if ready is None:
                raise ProtocolError(f"{op}: no images were made ready for it")  # every predict comes through the Reader
            if op == "predict_many" and not self.adapter.multi_image:
                raise ProtocolError(f"adapter {self.spec!r} takes one image per call: send 'predict'")
            return self._run(ready, op == "predict")
        if op == "stats":
            return {"stats": self.stats()}
        raise ProtocolError(f"unknown op {op!r}")

    def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        from harness.registry import create_adapter

        if req.get("protocol") != PROTOCOL:
            raise ProtocolError(f"this worker (harness {harness.__version__}) speaks protocol {PROTOCOL}, "
                                f"the caller {req.get('protocol')!r}: install the same harness in both environments")
        if self.adapter is not None:
            raise ProtocolError("hello was already sent; one worker serves one adapter")
        spec, options = req.get("adapter"), req.get("options") or {}
        if not isinstance(spec, str) or not isinstance(options, dict):
            raise ProtocolError("hello needs 'adapter' (a string) and 'options' (an object)")
        adapter = create_adapter(spec, options)
        if adapter.info.oracle:
            raise ProtocolError(f"adapter {spec!r} is an oracle: it is given the ground truth, which never crosses the pipe "
                                "to a worker; run it in-process (env: local, no python:)")
        adapter.check()  # the parent builds and checks every model before any predicts: a failure here refuses hello
        self.adapter, self.spec = adapter, spec
        info = self.adapter.info
        return {"protocol": PROTOCOL, "info": {"name": info.name, "description": info.description, "outputs": list(info.outputs),
                                               "box_space": info.box_space, "version": info.version,
                                               "checkpoints": list(info.checkpoints), "reference": info.reference},
                "multi_image": bool(adapter.multi_image),
                # Paths and the like as text, exactly as the run's fingerprint serialises them.
                "config": json.loads(json.dumps(self.adapter.config(), default=str)), "runtime": runtime_info(spec)}

    def items(self, req: dict[str, Any]) -> list[tuple[str, list[Query]]]:
        """A predict request's (image path, queries) per item, checked (in the reader thread)."""
        if req["op"] == "predict":
            return [self._item(req, "predict")]
        raw = req.get("items")
        if not isinstance(raw, list) or not raw:
            raise ProtocolError("predict_many needs 'items': a non-empty list of {'image', 'queries'}")
        items = [self._item(item, f"item {i}") for i, item in enumerate(raw)]
        if sum(len(q) for _, q in items) > MAX_SAMPLES:
            raise ProtocolError(f"predict_many carries at most {MAX_SAMPLES} queries")
        return items

    def _item(self, data: Any, where: str) -> tuple[str, list[Query]]:
        if not isinstance(data, dict):
            raise ProtocolError(f"{where} must be an object")
        image_path, raw = data.get("image"), data.get("queries")
        if not isinstance(image_path, str) or not image_path:
            raise ProtocolError(f"{where} needs 'image' (a path)")
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_SAMPLES:
            raise ProtocolError(f"{where} needs 'queries': a list of 1 to {MAX_SAMPLES} queries")
        queries = [query_from_json(s, f"query {i}") for i, s in enumerate(raw)]
        if any(s.image != image_path for s in queries):
            raise ProtocolError("every query of a batch must be on the request's image")
        return image_path, queries

    def _run(self, ready: Ready, one_image: bool) -> dict[str, Any]:
        assert self.adapter is not None
        if ready.failure is not None:
            raise ready.failure
        self.counters["images"] += ready.decoded
        items = ready.items
        start = time.perf_counter()
        try:
            preds = [self.adapter.predict(*items[0])] if one_image else self.adapter.predict_many(items)
        except Exception as exc:
            _release_memory_after_oom(exc)
            raise
        elapsed = time.perf_counter() - start
        n = sum(len(q) for _, q in items)
        if (not isinstance(preds, list) or len(preds) != len(items)
                or any(not isinstance(p, list) or len(p) != len(q) or not all(isinstance(x, Prediction) for x in p)
                       for p, (_, q) in zip(preds, items))):
            got = sum(len(p) for p in preds if isinstance(p, list)) if isinstance(preds, list) else type(preds).__name__
            raise RuntimeError(f"returned {got} predictions for {n} samples")
        self.counters["samples"] += n
        self.counters["batches"] += 1
        self.counters["predict_seconds"] += elapsed
        # The per-sample time is the model call's own, as in-process; never the decode (done ahead) nor the pipe.
        wire = [[_wire_form(p, elapsed / n) for p in item] for item in preds]
        return {"predictions": wire[0] if one_image else wire, "stats": self.stats()}

    def stats(self) -> dict[str, float]:
        out = dict(self.counters)
        peak = peak_gpu_memory()
        if peak is not None:
            out["peak_gpu_memory_bytes"] = peak
        if self.adapter is not None:
            try:
                out.update({str(k): float(v) for k, v in self.adapter.stats().items()})
            except Exception:
                traceback.print_exc()  # a broken counter must not fail predictions
        return out


def _wire_form(pred: Prediction, seconds: float) -> dict[str, Any]:
    """Prediction.to_json with the batch's time per sample filled in and RLE bytes made text
    (the parent accepts bytes counts in-process, so the pipe must not refuse them)."""
    out = pred.to_json()
    if out.get("seconds") is None:
        out["seconds"] = seconds
    out["mask"] = _text_counts(out.get("mask"))
    if isinstance(out.get("instances"), list):
        out["instances"] = [{**i, "mask": _text_counts(i.get("mask"))} for i in out["instances"]]
    return out


def _text_counts(mask: Any) -> Any:
    if isinstance(mask, dict) and isinstance(mask.get("counts"), bytes):
        return {**mask, "counts": mask["counts"].decode("ascii")}
    return mask


def _release_memory_after_oom(exc: BaseException) -> None:
    """The parent halves the batch on OOM and retries; free this process's cache first."""
    from harness.run.callers import is_out_of_memory

    torch = sys.modules.get("torch")
    if torch is not None and is_out_of_memory(exc) and torch.cuda.is_available():
        torch.cuda.empty_cache()


def serve(inp: IO[bytes], out: IO[bytes], max_bytes: int = MAX_LINE_BYTES) -> int:
    """Answer requests until shutdown or EOF (the parent went away); return the exit status."""
    worker = Worker()
    reader = Reader(inp, max_bytes, worker.items)
    while True:
        req: Any = None
        try:
            got = reader.next()
            if got is None:
                return 0
            if isinstance(got, Exception):
                raise got
            req, ready = got
            reply: dict[str, Any] = {"ok": True, **worker.handle(req, ready)}
            if req.get("op") == "hello" and worker.adapter is not None and worker.adapter.prepares_images:
                reader.prepare = functools.partial(prepared, worker.adapter)  # the reader does its CPU work per image too
        except Exception as exc:
            if not isinstance(exc, ProtocolError):
                traceback.print_exc()  # the full story goes to the log; the reply carries one line
            reply = {"ok": False, "error": str(exc) or type(exc).__name__, "type": type(exc).__name__,
                     "traceback": None if isinstance(exc, ProtocolError) else traceback.format_exc(limit=20)}
        if isinstance(req, dict) and "id" in req:
            reply["id"] = req["id"]
        try:
            data = json.dumps(reply).encode()
        except (TypeError, ValueError) as exc:  # e.g. an adapter put bytes or an array into a Prediction
            data = json.dumps({"ok": False, "error": f"reply is not JSON-serialisable: {exc}", "type": "TypeError",
                               "id": reply.get("id")}).encode()
        if len(data) > max_bytes:
            data = json.dumps({"ok": False, "error": f"reply of {len(data)} bytes exceeds the {max_bytes}-byte limit",
                               "type": "ProtocolError", "id": reply.get("id")}).encode()
        out.write(data + b"\n")
        out.flush()
        if isinstance(req, dict) and req.get("op") == "shutdown":
            return 0


def _take_protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Keep the real stdin/stdout for the protocol; point fds 0/1 at /dev/null and stderr."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto_in, proto_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print this environment's adapters as JSON and exit")
    parser.add_argument("--max-line-bytes", type=int, default=MAX_LINE_BYTES)
    args = parser.parse_args(argv)
    if args.list:
        from harness.registry import all_adapters

        print(json.dumps({**runtime_info(), "adapters": {n: e.origin for n, e in sorted(all_adapters().items())}}))
        return 0
    # Ctrl-C in the terminal reaches the whole process group: let the parent decide; a worker
    # whose parent is gone sees EOF and exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in, proto_out = _take_protocol_streams()
    print(f"harness.run.worker: pid {os.getpid()}, python {sys.executable}, harness {harness.__version__}", file=sys.stderr)
    try:
        return serve(proto_in, proto_out, args.max_line_bytes)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
