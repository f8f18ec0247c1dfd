"""What ``harness doctor`` asks a model's environment, run there as ``python -m harness.run.doctor_probe``.

It runs in the model's own interpreter, as the worker does (harness.run.remote), so what it finds is what the
model will find: that interpreter's torch, CUDA, flash-attn and NCCL. Two questions, one JSON object on stdout:

- ``facts DEVICE``: torch's version and build, whether it sees the device, how many GPUs, bf16 support, free
  memory, flash-attn and scaled-dot-product attention, NCCL;
- ``oom DEVICE``: the out-of-memory halving path of harness.run.predict on the device: an adapter whose first
  call on a batch of more than one sample really runs out of memory (on CUDA, an allocation larger than the GPU;
  elsewhere the error torch raises for it, made by hand) and then predicts; the batch must come back halved, every
  sample predicted, the GPU usable after;
- ``allreduce DEVICE``, under ``torchrun``: an all-reduce across the ranks over NCCL (CUDA, each rank on
  ``cuda:$LOCAL_RANK``) or gloo (CPU); each rank answers with the sum it got.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def facts(device: str) -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.executable}
    try:
        import torch
    except Exception as exc:  # an import that fails for any reason is the finding
        return {**out, "torch_error": f"{type(exc).__name__}: {exc}"}
    out.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               device_count=torch.cuda.device_count() if torch.cuda.is_available() else 0,
               sdpa=hasattr(torch.nn.functional, "scaled_dot_product_attention"))
    try:
        import torch.distributed as dist

        out["nccl"] = bool(dist.is_available() and dist.is_nccl_available())
    except Exception:  # a torch without distributed support
        out["nccl"] = False
    try:
        import flash_attn

        out["flash_attn"] = getattr(flash_attn, "__version__", "installed")
    except Exception as exc:
        out["flash_attn_error"] = f"{type(exc).__name__}: {exc}"
    if device.startswith("cuda") and out["cuda_available"]:
        index = int(device.partition(":")[2] or 0)
        free, total = torch.cuda.mem_get_info(index)
        out.update(device_name=torch.cuda.get_device_name(index), capability=list(torch.cuda.get_device_capability(index)),
                   bf16=bool(torch.cuda.is_bf16_supported()), free_bytes=int(free), total_bytes=int(total))
    return out


def _forced_oom(torch: Any, device: str) -> None:
    """Run out of memory on ``device`` for real where there is an allocator that can (CUDA)."""
    if device.startswith("cuda"):
        _, total = torch.cuda.mem_get_info(torch.device(device))
        torch.empty(int(total) * 2, dtype=torch.uint8, device=device)  # twice the GPU: the caching allocator gives up
        raise RuntimeError(f"allocating {2 * total} bytes on {device} did not run out of memory")
    raise torch.cuda.OutOfMemoryError("CUDA out of memory (forced by harness doctor on a device without CUDA)")


def oom_halving(device: str, batch: int = 4) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    from harness import masks
    from harness.adapter import Adapter, AdapterInfo
    from harness.run.predict import predict_batches
    from harness.types import GroundTruth, Prediction, Query, Sample

    class OnceOutOfMemory(Adapter):
        info = AdapterInfo(name="doctor-oom", description="runs out of memory once on a batch of more than one sample")

        def __init__(self) -> None:
            super().__init__()
            self.calls: list[int] = []
            self.raised = ""

        def predict(self, image: np.ndarray, queries: Sequence[Query]) -> list[Prediction]:
            self.calls.append(len(queries))
            if len(queries) > 1 and not self.raised:
                try:
                    _forced_oom(torch, device)
                except torch.cuda.OutOfMemoryError as exc:
                    self.raised = type(exc).__name__
                    raise
            # after the halving, real work on the device: the allocator must have recovered
            x = torch.ones(64, 64, device=device)
            assert float((x @ x).sum()) == 64.0 ** 3
            h, w = image.shape[:2]
            return [Prediction(mask=masks.full(h, w)) for _ in queries]

    adapter = OnceOutOfMemory()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "doctor.png"
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
        gt = GroundTruth(mask=masks.full(8, 8))
        samples = [Sample(id=f"doctor/{k}", image=str(image), expression="everything", gt=gt, dataset="doctor", split="oom")
                   for k in range(batch)]
        got = [p for ready in predict_batches(adapter, samples, batch, device=device if device.startswith("cuda") else None)
               for _, p in ready]
    return {"raised": adapter.raised, "calls": adapter.calls, "halvings": [p.oom_halvings for p in got],
            "predicted": sum(p.prediction.mask is not None for p in got), "samples": batch}


def all_reduce(device: str) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(where)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend)
    try:
        value = torch.full((1,), float(rank + 1), device=where)
        dist.all_reduce(value)
        world = dist.get_world_size()
        return {"rank": rank, "world": world, "backend": backend, "device": str(where), "sum": float(value.item()),
                "expected": world * (world + 1) / 2}
    finally:
        dist.destroy_process_group()


QUESTIONS = {"facts": facts, "oom": oom_halving, "allreduce": all_reduce}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in QUESTIONS:
        print(f"usage: python -m harness.run.doctor_probe {'|'.join(QUESTIONS)} DEVICE", file=sys.stderr)
        return 2
    try:
        result = QUESTIONS[args[0]](args[1])
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    # One write of the whole line: two torchrun ranks share a stdout pipe, and a line written in one write of
    # under PIPE_BUF bytes is never interleaved with the other rank's.
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
