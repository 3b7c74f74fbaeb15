"""The one training loop: seeding, devices, torchrun/DDP, progress, metrics log, resumable state,
held-out evaluation and export. A model family supplies a `Task`; everything else lives here."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .cards import write_card
from .data import batches
from .errors import VqtoolError
from .hub import resolve_device, save_checkpoint
from .media import atomic_path

STATE_FILE = "state.safetensors"
VALIDATION_FILE = "validation.json"  # the validation curve and the best point (Validation)
BEST_FILE = "best.safetensors"  # the weights of the best validation point


@dataclass
class TrainOptions:
    out: Path
    name: str
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 3e-4
    warmup: int = 200
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    checkpoint_every: int = 500
    resume: bool = False
    quiet: bool = False
    time_limit: float | None = None  # seconds; training ends at `steps` or here, whichever is first
    remeasure: str | None = None  # a checkpoint: train nothing, re-run its held-out evaluation (remeasure)
    compare_with: str | None = None  # a checkpoint whose held-out numbers the card shows beside this one's
    command: str = field(default_factory=lambda: shlex.join(["vqtool", *sys.argv[1:]]))


class Task(Protocol):
    """What a model family provides to `fit`."""

    architecture: str
    config: object

    def build(self) -> torch.nn.Module: ...
    def dataset_size(self) -> int: ...
    def batch(self, indices: torch.Tensor, device: torch.device, generator: torch.Generator): ...
    def loss(self, model: torch.nn.Module, batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss and the numbers to log; `generator` is the run's seeded random source."""
    def optimizer_groups(self, model: torch.nn.Module) -> list[dict]:
        """Adam parameter groups; a group's `lr_scale` multiplies the scheduled learning rate."""
    def evaluate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]: ...
    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Validation numbers, every `validate_every` steps (0: never) on rank 0, logged with the
        training seconds so far; with `select_by` set, the weights of its best value are exported."""
    def provenance(self) -> dict: ...
    def card_notes(self) -> dict: ...


class TaskBase:
    """The parts every task repeats: a network built from `model_class(config)`, a training set with a
    length, data provenance recorded as given, one Adam group, and no evaluation without held-out data.
    `storage_dtype` (e.g. torch.float16) stores the exported weights at that precision; they are rounded
    to it before the held-out evaluation, so the card's numbers are those of the weights shipped."""

    model_class: type
    storage_dtype: torch.dtype | None = None
    validate_every: int = 0
    select_by: str | None = None  # a key of `validate`'s result, higher is better
    config: object
    train: object
    data_info: dict

    @property
    def architecture(self) -> str:
        return self.model_class.architecture

    def build(self) -> torch.nn.Module:
        return self.model_class(self.config)

    def dataset_size(self) -> int:
        return len(self.train)

    def optimizer_groups(self, model: torch.nn.Module) -> list[dict]:
        return [{"params": list(model.parameters())}]

    def evaluate(self, model: torch.nn.Module, device: torch.device) -> dict:
        return {}

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict:
        return {}

    def provenance(self) -> dict:
        return self.data_info


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Distributed:
    """Join the torchrun group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def lr_at(step: int, progress: float, opts: TrainOptions) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak as progress goes from 0 to 1."""
    warmup = min(opts.warmup, opts.steps // 10)
    if step < warmup:
        return opts.lr * (step + 1) / warmup
    return opts.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def progress_of(step: int, elapsed: float, opts: TrainOptions, ddp: "Distributed") -> float:
    """Share of the run done: by steps, or by time when a time limit is set (rank 0's clock rules)."""
    progress = step / opts.steps
    if opts.time_limit:
        by_time = torch.tensor([elapsed / opts.time_limit])
        if ddp.world > 1:
            dist.broadcast(by_time, 0)
        progress = max(progress, float(by_time))
    return progress


def save_state(path: Path, model, optimizer, step: int, opts: TrainOptions, history: list) -> None:
    """Everything needed to resume, as safetensors (optimizer state flattened, no pickle)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for index, state in optim["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    metadata = {"step": str(step), "param_groups": json.dumps(optim["param_groups"]), "history": json.dumps(history),
                "options": json.dumps({k: str(v) for k, v in asdict(opts).items()})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_state(path: Path, model, optimizer) -> tuple[int, list]:
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.cpu"])
    earlier = json.loads(meta.get("options", "{}")).get("command")  # states saved before history existed
    default = [{"command": earlier, "from_step": 0}] if earlier else []
    return int(meta["step"]), json.loads(meta.get("history", json.dumps(default)))


@torch.no_grad()
def round_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Every floating-point tensor rounded through `dtype` in place (as it will be stored)."""
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(dtype))


class Validation:
    """Periodic validation on rank 0 (`task.validate_every`): a curve of its numbers against training
    seconds (validation itself not counted) and, with `task.select_by`, the best weights so far. Both
    are kept in the run folder (the curve and best point in VALIDATION_FILE, rewritten at each point;
    the weights in BEST_FILE, written only when the best improves), so that a resumed run continues
    the curve and still exports the best weights."""

    def __init__(self, task, main: bool, out: Path, resume: bool):
        self.task, self.every = task, getattr(task, "validate_every", 0) if main else 0
        self.key = getattr(task, "select_by", None)
        self.record_path, self.weights_path = out / VALIDATION_FILE, out / BEST_FILE
        self.curve: list[dict] = []
        self.best: dict | None = None
        self.spent = 0.0
        if self.every and resume and self.record_path.is_file():
            record = json.loads(self.record_path.read_text())
            self.curve, self.best = record["curve"], record["best"]
        self.offset = self.curve[-1]["seconds"] if self.curve else 0.0  # training seconds before a resume

    def due(self, step: int, done: float) -> bool:
        return bool(self.every) and (step % self.every == 0 or done >= 1)

    def run(self, model, device, step: int, seconds: float) -> dict:
        started = time.time()
        model.eval()
        with torch.no_grad():
            point = {"step": step, "seconds": round(self.offset + seconds, 2), **self.task.validate(model, device)}
        model.train()
        self.curve.append(point)
        if self.key and (self.best is None or point[self.key] > self.best[self.key]):
            self.best = point
            with atomic_path(self.weights_path) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
        with atomic_path(self.record_path) as tmp:
            tmp.write_text(json.dumps({"curve": self.curve, "best": self.best}))
        self.spent += time.time() - started
        return point

    def finish(self, model, seconds: float, steps: int) -> dict | None:
        """Restore the selected weights; the record that goes into the checkpoint's metrics."""
        if not self.every:
            return None
        if self.best is not None:
            model.load_state_dict(load_file(str(self.weights_path)))
        return {"seconds": round(self.offset + seconds, 2), "steps": steps, "curve": self.curve,
                **({"select_by": self.key, "selected_step": self.best["step"]} if self.best else {})}


def fit(task: Task, opts: TrainOptions) -> Path | None:
    """Train `task` for opts.steps steps; rank 0 returns the exported checkpoint's path."""
    compared = comparison_record(opts.compare_with) if opts.compare_with else {}  # a wrong name fails now
    if opts.remeasure:
        return remeasure(task, opts, compared)
    device = resolve_device(opts.device)
    ddp = setup_distributed(device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    per_process, items = opts.batch_size // ddp.world, task.dataset_size() // ddp.world
    if not 1 <= per_process <= items:  # an epoch without a whole batch would never yield one
        raise VqtoolError(f"--batch-size {opts.batch_size} does not fit {task.dataset_size()} training items over "
                          f"{ddp.world} process(es); use at most {items * ddp.world}")
    torch.manual_seed(opts.seed)  # identical initial weights on every rank
    model = task.build().to(device)
    optimizer = torch.optim.Adam(task.optimizer_groups(model), lr=opts.lr)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    step, history = 0, []
    if opts.resume and state_path.is_file():
        step, history = load_state(state_path, model, optimizer)
    history.append({"command": opts.command, "from_step": step})  # every run that shaped the weights
    wrapped = model
    if ddp.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    generator = torch.Generator().manual_seed(opts.seed * 7919 + ddp.rank + step)
    order = batches(task.dataset_size(), opts.batch_size // ddp.world, opts.seed + step, ddp.rank, ddp.world)
    console = Console(stderr=True, quiet=opts.quiet or not ddp.main)
    log = open(out / "metrics.jsonl", "a") if ddp.main else None
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TextColumn("{task.fields[metrics]}"), TimeRemainingColumn(), console=console)
    started, running, counted, done = time.time(), {}, 0, step / opts.steps
    validation = Validation(task, ddp.main, out, opts.resume)

    def trained() -> float:  # seconds of training in this run, validation not counted
        return time.time() - started - validation.spent

    model.train()
    with progress:
        bar = progress.add_task(f"train {opts.name}", total=opts.steps, completed=step, metrics="")
        while done < 1:
            lr = lr_at(step, done, opts)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batch = task.batch(next(order), device, generator)
            loss, metrics = task.loss(wrapped, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            done = progress_of(step, trained(), opts, ddp)
            for key, value in metrics.items():
                running[key] = running.get(key, 0.0) + value
            counted += 1  # steps since the last record (a resumed run starts mid-window)
            if step % opts.log_every == 0 or done >= 1:
                record = {"step": step, "lr": lr, "seconds": round(trained(), 1),
                          **{k: round(v / counted, 6) for k, v in running.items()}}
                running, counted = {}, 0
                if log:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                shown = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "lr", "seconds"))
                progress.update(bar, completed=step, metrics=shown)
            if validation.due(step, done):
                point = validation.run(model, device, step, trained())
                if log:
                    log.write(json.dumps({"validation": point}) + "\n")
            if ddp.main and (step % opts.checkpoint_every == 0 or done >= 1):
                history[-1]["seconds"] = round(time.time() - started, 1)  # so resumed runs add up
                save_state(state_path, model, optimizer, step, opts, history)
    if log:
        log.close()
    exported = None
    if ddp.main:
        training = validation.finish(model, trained(), step)
        model.eval()
        dtype = getattr(task, "storage_dtype", None)
        if dtype is not None:
            round_weights(model, dtype)
        console.print(f"evaluating {opts.name} on held-out data…")
        with torch.no_grad():
            metrics = task.evaluate(model, device)
        if training:
            metrics["training"] = training
        provenance = {**task.provenance(), "steps": step, "batch_size": opts.batch_size, "lr": opts.lr,
                      "seed": opts.seed, "world_size": ddp.world, "device": device.type,
                      "torch": torch.__version__, "command": opts.command,
                      **({"resumed": history} if len(history) > 1 else {}),
                      "train_seconds": round(sum(run.get("seconds", 0) for run in history[:-1])
                                             + time.time() - started, 1),
                      "date": time.strftime("%Y-%m-%d", time.gmtime())}
        if dtype is not None:
            provenance["weights_dtype"] = str(dtype).replace("torch.", "")
        if compared:
            provenance["compared_with"] = compared
        exported = export(out, opts.name, model, task.architecture, task.config, provenance, metrics,
                          task.card_notes(), dtype)
        console.print(f"wrote {exported}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                                         if isinstance(v, (int, float))))
    if ddp.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return exported


def export(out: Path, name: str, model, architecture: str, config, provenance: dict, metrics: dict, extra: dict,
           dtype: torch.dtype | None) -> Path:
    """OUT/NAME.safetensors and its model card."""
    out.mkdir(parents=True, exist_ok=True)
    exported = out / f"{name}.safetensors"
    save_checkpoint(exported, model, architecture, config, name, provenance, metrics, extra=extra, dtype=dtype)
    write_card(exported)
    return exported


def comparison_record(name_or_path: str) -> dict:
    """What a card needs to show another checkpoint's held-out numbers beside its own (the model it
    replaces): which checkpoint, how it was trained, on which split it was measured, and its numbers."""
    from .hub import read_metadata, resolve, sha256_file

    path = resolve(name_or_path).path
    meta = read_metadata(path)
    prov = meta["provenance"]
    return {"name": meta["name"], "sha256": sha256_file(path), "steps": prov.get("steps"),
            "command": prov.get("command"), "eval_split": prov.get("eval_split"), "metrics": meta["metrics"]}


def remeasure(task: Task, opts: TrainOptions, compared: dict) -> Path:
    """A shipped checkpoint's held-out evaluation re-run with this command's data and judges (a new judge,
    a new metric) and exported under opts.name: weights, config and training provenance unchanged, every
    number it had kept unless re-measured, and provenance saying what was re-measured, when and how."""
    from .hub import load

    device = resolve_device(opts.device)
    model = load(opts.remeasure, device, expect=task.architecture)
    meta = model.metadata
    console = Console(stderr=True, quiet=opts.quiet)
    console.print(f"re-measuring {meta['name']} on held-out data…")
    with torch.no_grad():
        measured = task.evaluate(model, device)
    old = meta["metrics"]
    changed = sorted(k for k in measured if k in old and old[k] != measured[k])
    record = {"command": opts.command, "date": time.strftime("%Y-%m-%d", time.gmtime()), "from": meta["name"],
              "from_sha256": model.sha256, "torch": torch.__version__, "device": device.type,
              "added": sorted(set(measured) - set(old)), "changed": changed,
              "before": {k: old[k] for k in changed}}
    prov, now = meta["provenance"], task.provenance()  # what the evaluation newly names (a new judge) joins it;
    evaluated = {k: v for k, v in now.items() if k.startswith("eval_")}  # the rest stays as trained, but the split
    provenance = {**now, **prov, **evaluated, "remeasured": [*prov.get("remeasured", []), record],
                  **({"compared_with": compared} if compared else {})}
    dtype = getattr(torch, prov["weights_dtype"]) if "weights_dtype" in prov else None  # stored as it was
    exported = export(Path(opts.out), opts.name, model, task.architecture, model.config, provenance,
                      {**old, **measured}, meta["extra"], dtype)
    console.print(f"wrote {exported}: {len(record['added'])} numbers added, {len(changed)} changed")
    return exported
