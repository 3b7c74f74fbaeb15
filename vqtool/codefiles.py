"""`.vqc` code files from Python, the layer under `vqtool encode` and `vqtool decode`::

    data = vqtool.encode_file("photo.png")                  # bytes of a .vqc file (one record)
    image = vqtool.decode_file(data)                        # (H, W, C) uint8 array
    wave, rate = vqtool.decode_file(vqtool.encode_file("talk.wav"), voice="spk3")

The media kind of a record picks the family codec that reads it (`registry.for_media`); the header
names the checkpoint, which must be the one the codes were made with.
"""

from __future__ import annotations

import os

from . import registry
from .codes import CodeFile, read_codes
from .errors import VqtoolError


class ModelCache:
    """Load each checkpoint once, and check that it is the one a record's codes were made with and
    that the record fits it."""

    def __init__(self, override: str | None = None, device: str = "auto", models_dir=None):
        self.override, self.device, self.models_dir, self.loaded = override, device, models_dir, {}
        self.makers: dict[tuple, str] = {}  # (header name, SHA-256, coding) -> the checkpoint to use

    def load(self, name: str, kind: str):
        """The checkpoint `name`, which must read records of this media kind."""
        from .hub import load

        if name not in self.loaded:
            architecture = registry.for_media(kind).media[kind].architecture
            self.loaded[name] = load(name, self.device, self.models_dir, expect=architecture)
        return self.loaded[name]

    def for_record(self, record: CodeFile, source: str):
        """The checkpoint for a record: `--model` if given, else the one its header names or, when that
        name now holds another checkpoint (or none), the installed one that made the codes."""
        kind = record.media["kind"]
        name = self.override or self.maker(record)
        net = self.load(name, kind)
        check_made_by(net, record, name, source)
        codec_of(kind).check_record(net, record, source)
        return net

    def maker(self, record: CodeFile) -> str:
        """The header's model name if it still holds the checkpoint that made the codes, else an installed
        pinned checkpoint that did (a name moved on to a newer one: its old code files still decode), else
        the header's name (whose load or check then says what is wrong). Once per kind of record."""
        from .hub import catalogue, read_metadata

        key = (record.model, record.checkpoint_sha256, record.coding)
        if key not in self.makers:
            try:
                net = self.load(record.model, record.media["kind"])
                named = made_by(record, net.sha256, net.metadata)
            except VqtoolError:
                named = False
            self.makers[key] = record.model if named else next(
                (name for name, entry in sorted(catalogue(self.models_dir).items())
                 if entry.pinned_sha256 and entry.path.is_file()
                 and made_by(record, entry.pinned_sha256, read_metadata(entry.path))), record.model)
        return self.makers[key]


def made_by(record: CodeFile, sha256: str, metadata: dict) -> bool:
    """Whether the checkpoint with this SHA-256 and metadata made the record's codes. Packed codes depend
    only on the VQ-VAE, which a checkpoint with a prior added keeps unchanged (its `codec_sha256`); a
    re-measured checkpoint (`--remeasure`) has the weights of each one it was re-measured from, and one
    that only added a part after the codes (provenance `codes_of`, e.g. a vocoder head) the same codes."""
    codec = metadata.get("extra", {}).get("codec_sha256") if record.coding == "packed" else None
    prov = metadata.get("provenance", {})
    remeasured = prov.get("remeasured", [])
    same = [sha256, *(run.get("from_sha256") for run in remeasured if isinstance(run, dict)),
            *(prov.get("codes_of", []) if isinstance(prov.get("codes_of"), list) else [])]
    return any(isinstance(s, str) and record.made_by(s) for s in same) or bool(codec and record.made_by(codec))


def check_made_by(net, record: CodeFile, name: str, source: str) -> None:
    """The record's codes must come from this checkpoint."""
    if not made_by(record, net.sha256, net.metadata):
        raise VqtoolError(f"codes were made by checkpoint {record.checkpoint_sha256[:12]}… of model "
                          f"'{record.model}', but '{name}' is {net.sha256[:12]}…; use that model", source)


def codec_of(kind: str):
    """The codec module of the family that reads and writes records of this media kind."""
    return registry.for_media(kind).module("codec")


def _input(source) -> tuple[str, bytes | None]:
    """(name in messages, bytes or None to read the file)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(source)
    return os.fspath(source), None


def media_kind(source: str, data: bytes | None = None) -> str:
    """"audio" or "image": by suffix, else by the first bytes (of `data`, or of the file)."""
    from .audio import SNIFF_BYTES, looks_like_audio

    return "audio" if looks_like_audio(source, data[:SNIFF_BYTES] if data is not None else None) else "image"


def encode_file(source, model: str | None = None, compress: bool = False, device: str = "auto",
                models_dir=None, quality: int | None = None) -> bytes:
    """An image or a recording (a path, or its bytes) -> the bytes of a one-record `.vqc` file.
    `model` defaults to the family's choice (photos for images, cifar10 for images of at most 32x32
    pixels, speech for audio); `quality`: the photo model's residual stages to keep."""
    name, data = _input(source)
    kind = media_kind(name, data)
    codec = codec_of(kind)
    if model is None:
        choose = getattr(codec, "default_model_for", None)
        model = choose(name, data, quality) if choose else registry.for_media(kind).media[kind].default_model
    net = ModelCache(None, device, models_dir).load(model, kind)
    if quality is None:
        return codec.encode(net, name, data=data, compress=compress)
    if kind != "image":
        raise VqtoolError("quality applies to images (the photo model)", name)
    return codec.encode(net, name, data=data, compress=compress, quality=quality)


def read_records(source) -> list[CodeFile]:
    """Every record of a `.vqc` file (a path, or its bytes)."""
    from .media import read_bytes

    name, data = _input(source)
    return read_codes(read_bytes(name) if data is None else data, name)


def decode_file(source, model: str | None = None, voice: str | None = None, device: str = "auto", models_dir=None):
    """A one-record `.vqc` file (a path, or its bytes) -> an (H, W, C) uint8 image, or (samples, rate)
    for audio (float32 mono at the recorded rate; `voice`: a built-in speaker, else the recorded voice).
    Files of several records: `read_records` and `decode_record`."""
    name = _input(source)[0]
    records = read_records(source)
    if len(records) != 1:
        raise VqtoolError(f"holds {len(records)} records; decode them one by one (vqtool.read_records)", name)
    return decode_record(records[0], model, voice, ModelCache(model, device, models_dir), name)


def decode_record(record: CodeFile, model: str | None = None, voice: str | None = None,
                  cache: ModelCache | None = None, source: str = "<record>"):
    cache = cache or ModelCache(model)
    net = cache.for_record(record, source)
    codec = codec_of(record.media["kind"])
    if voice is not None:
        if not hasattr(codec, "resolve_voice"):
            raise VqtoolError(f"a voice applies to audio records, not {record.media['kind']} ones", source)
        return codec.decode(net, record, source, voice=codec.resolve_voice(net, voice))
    return codec.decode(net, record, source)


__all__ = ["ModelCache", "decode_file", "decode_record", "encode_file", "read_records"]
