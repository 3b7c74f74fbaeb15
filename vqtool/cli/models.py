"""`vqtool models list` and `vqtool models info`: what a checkpoint name reaches, without loading weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import registry
from ..errors import VqtoolError
from .common import ModelsDirOpt, emit_json


def models_list(models_dir: Optional[Path] = ModelsDirOpt,
                as_json: bool = typer.Option(False, "--json", help="One JSON record per model.")):
    """List the checkpoints a name can reach (bundled first, then your folder)."""
    from ..hub import catalogue, describe

    headline = registry.headline_metrics()
    for name, resolved in sorted(catalogue(models_dir).items()):
        try:
            info = describe(resolved)
        except VqtoolError as exc:
            info = {"name": name, "path": str(resolved.path), "error": str(exc)}
        record = {k: info.get(k) for k in ("name", "architecture", "bundled", "path", "size_bytes", "error")
                  if info.get(k) is not None}
        record["metrics"] = info.get("metrics", {})
        if as_json:
            emit_json(record)
        else:
            metrics = ", ".join(f"{k} {v}" for k, v in record["metrics"].items() if k in headline)
            origin = "bundled" if record.get("bundled") else "user"
            sys.stdout.write(f"{name:20} {record.get('architecture', '?'):16} {origin:8} {metrics}\n")


def models_info(name: str = typer.Argument(..., help="Checkpoint name or path."),
                models_dir: Optional[Path] = ModelsDirOpt,
                as_json: bool = typer.Option(False, "--json", help="The whole record as JSON.")):
    """Describe one checkpoint: config, training provenance, held-out metrics, card."""
    from ..cards import abridged
    from ..hub import describe

    info = describe(name, models_dir)
    if as_json:
        emit_json(info)
        return
    lines = [f"{info['name']}  ({info['architecture']}, {info['size_bytes'] / 1e6:.1f} MB, "
             f"{'bundled, SHA-256 pinned' if info['bundled'] else 'user checkpoint'})",
             f"  path     {info['path']}", f"  card     {info['card']}",
             f"  config   {json.dumps(abridged(info['config']))}",
             f"  trained  {info['provenance'].get('command')}",
             "  metrics  " + shown_metrics(info["metrics"])]
    family = registry.family_of(info["architecture"])
    card = family.module("card") if family else None
    if card is not None and hasattr(card, "info_lines"):
        lines[3:3] = card.info_lines(info["config"])  # the family's own lines, before the config
    sys.stdout.write("\n".join(lines) + "\n")


def shown_metrics(metrics: dict, most: int = 40) -> str:
    """All of a short metric list; of a long one (the motion tables), the headline numbers and a count."""
    if len(metrics) <= most:  # tables and curves (dicts, lists) are in --json and the card
        return ", ".join(f"{k}=…" if isinstance(v, (dict, list)) else f"{k}={v}" for k, v in metrics.items())
    headline = registry.headline_metrics()
    picked = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items() if k in headline]
    return ", ".join(picked + [f"… {len(metrics) - len(picked)} more in --json and the card"])


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(no_args_is_help=True, help="List and describe checkpoints.")
    models_app.command("list")(models_list)
    models_app.command("info")(models_info)
    app.add_typer(models_app, name="models")
