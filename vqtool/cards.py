"""Model cards, written from a checkpoint's own metadata so that they can never disagree with it.

The renderer is shared; the words are the families' (`card.py` in each family folder: a `CardText`
per topic, the topic being the `task` a checkpoint names in its notes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import registry
from .data.catalogue import dataset_entry
from .hub import read_metadata

GENERIC_USE = "Research and teaching. Not for decisions about people."


@dataclass(frozen=True)
class CardText:
    intended_use: str = ""
    metric_notes: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)  # may use {data} and the family's `fields(config)`


def render_card(meta: dict) -> str:
    """The card of a checkpoint, in the words of its architecture's family (`card.py`: `CARDS` by topic,
    and the optional hooks `topics`, `fields`, `provenance_lines`, `evaluation_lines`)."""
    prov, metrics, notes = meta["provenance"], meta["metrics"], meta.get("extra", {})
    described, licence = dataset_entry(prov.get("train_data", "?"))
    family = registry.family_of(meta["architecture"])
    card = family.module("card") if family else None
    words = card.CARDS if card else {}
    task = notes.get("task", "")
    texts = [words[t] for t in (card.topics(meta) if hasattr(card, "topics") else [task]) if t in words]
    fields = {"data": described, **(card.fields(meta["config"]) if hasattr(card, "fields") else {})}
    main = words.get(task)
    lines = [
        f"# Model card: `{meta['name']}`", "",
        f"{notes.get('summary', '')}", "",
        "## Intended use", main.intended_use if main else GENERIC_USE, "",
        "## Training data",
        f"- {described}",
        f"- split: `{prov.get('train_split', '?')}` ({prov.get('train_items', '?')} items), file SHA-256 "
        f"`{str(prov.get('train_sha256', '?'))[:16]}…`",
        f"- licence / terms: {licence}", "",
        "## Training",
        f"- architecture `{meta['architecture']}`, vqtool {meta.get('vqtool_version')}",
        f"- {prov.get('steps')} steps, batch {prov.get('batch_size')}, lr {prov.get('lr')}, seed {prov.get('seed')}, "
        f"{prov.get('world_size')} process(es) on {prov.get('device')}, {prov.get('train_seconds')} s, torch {prov.get('torch')}",
        f"- command: `{prov.get('command')}`",
        *[f"  - run {i + 1}, from step {run.get('from_step')}"
          + (f", {run['seconds']} s" if "seconds" in run else "") + f": `{run.get('command')}`"
          for i, run in enumerate(prov.get("resumed", []))],
        *[f"- re-measured {run.get('date')} (same weights, `--remeasure`): `{run.get('command')}`; "
          f"{len(run.get('added', []))} numbers added, {len(run.get('changed', []))} changed"
          + (" (before: " + ", ".join(f"{k} {v}" for k, v in run["before"].items()) + ")" if run.get("before") else "")
          for run in prov.get("remeasured", [])], "",
        *(card.provenance_lines(prov) if hasattr(card, "provenance_lines") else []),
        *([f"Judge used in the evaluation only: `{prov['judge'].get('name')}` (SHA-256 "
           f"`{str(prov['judge'].get('sha256'))[:16]}…`), trained with `{prov['judge'].get('command')}`.", ""]
          if prov.get("judge") else []),
        *(["Attributes: " + ", ".join(f"`{k}` = {v}" for k, v in prov["attributes"].items())
           + f" (labels: {prov.get('labels')}; share of training faces with each: "
           + ", ".join(f"{k} {v}" for k, v in prov.get("positive_share", {}).items()) + ").", ""]
          if prov.get("attributes") else []),
        "## Configuration", "```json", json.dumps(abridged(meta["config"]), indent=2), "```", "",
        f"## Evaluation (held-out: `{prov.get('eval_split', '?')}`)",
        *(card.evaluation_lines(meta) if hasattr(card, "evaluation_lines") else metric_table(meta)), "",
        *[f"- {text}" for t in texts for text in t.metric_notes], "",
        "## Limitations",
        *[f"- {text.format(**fields)}" for t in texts for text in t.limitations], "",
    ]
    return "\n".join(lines)


def metric_table(meta: dict) -> list[str]:
    """The held-out numbers; with `compared_with` in the provenance (`train --compare-with`), the other
    checkpoint's beside them, where both were measured on the same split."""
    metrics, other = meta["metrics"], meta["provenance"].get("compared_with")
    plain = ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in metrics.items()]]
    if not other:
        return plain
    named = (f"`{other['name']}` (SHA-256 `{str(other.get('sha256'))[:16]}…`, {other.get('steps')} steps, "
             f"`{other.get('command')}`)")
    if other.get("eval_split") != meta["provenance"].get("eval_split"):
        return [f"Compared with {named}, measured on another split (`{other.get('eval_split')}`), so its numbers "
                "are not shown.", "", *plain]
    return [f"Beside the numbers of {named}:", "", f"| metric | this model | `{other['name']}` |", "|---|---|---|",
            *[f"| {k} | {v} | {other['metrics'].get(k, '–')} |" for k, v in metrics.items()]]


LONG_LIST = 1000  # a config list longer than this (a vocabulary) is shown by its first items and its length


def abridged(config: dict) -> dict:
    return {k: v[:10] + [f"... {len(v):,} items in all (vqtool models info --json)"]
            if isinstance(v, list) and len(v) > LONG_LIST else v for k, v in config.items()}


def write_card(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    card = checkpoint.with_suffix(".md")
    card.write_text(render_card(read_metadata(checkpoint)))
    return card
