"""Read tensors one at a time from a safetensors checkpoint and write a sharded one.

The offload mode never holds a whole model: :class:`CheckpointReader` opens the source shards
lazily (``safe_open`` memory-maps the file and copies out just the requested tensor) and
:class:`ShardWriter` writes each pruned decoder layer as its own shard, then the standard
``model.safetensors.index.json`` that ``from_pretrained`` follows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from ...errors import UserError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}


class CheckpointReader:
    """Tensor names, sizes and contents of a local safetensors checkpoint directory."""

    def __init__(self, directory: str | Path):
        from safetensors import safe_open

        self.directory = Path(directory)
        index = self.directory / INDEX
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = {k: self.directory / f for k, f in weight_map.items()}
        elif (self.directory / SINGLE).is_file():
            with safe_open(self.directory / SINGLE, framework="pt") as fh:
                self.files = {k: self.directory / SINGLE for k in fh.keys()}
        else:
            raise UserError(
                f"offload mode needs a safetensors checkpoint in {str(self.directory)!r} ({SINGLE} or {INDEX}); "
                "load the model once and save it with save_pretrained, or run without --offload"
            )
        self._meta: dict[str, tuple[str, list[int]]] = {}
        self._headers: dict[Path, tuple[int, dict]] = {}
        for file in sorted(set(self.files.values())):
            with safe_open(file, framework="pt") as fh:
                for k in fh.keys():
                    sl = fh.get_slice(k)
                    self._meta[k] = (sl.get_dtype(), list(sl.get_shape()))

    def keys(self) -> list[str]:
        return list(self.files)

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def nbytes(self, key: str) -> int:
        dtype, shape = self._meta[key]
        n = 1
        for s in shape:
            n *= s
        return n * _DTYPE_BYTES.get(dtype, 4)

    def total_bytes(self) -> int:
        return sum(self.nbytes(k) for k in self.files)

    def get(self, key: str) -> torch.Tensor:
        """One tensor; a floating-point one holding NaN or Inf is refused (UserError), as a load does."""
        t = self._read(key)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"the checkpoint {str(self.directory)!r} holds NaN or Inf in {key}; every result would be NaN: "
                            "use an intact checkpoint")
        return t

    def _read(self, key: str) -> torch.Tensor:
        """Read one tensor with plain file reads straight into its own buffer.

        Why not ``safe_open(...).get_tensor``: that memory-maps the shard, and the mapped pages
        count towards the process's resident memory on top of the copy; for a 260 MB embedding
        that doubled the offload mode's peak.
        """
        path = self.files[key]
        if path not in self._headers:
            with open(path, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                self._headers[path] = (8 + n, json.loads(fh.read(n)))
        start, header = self._headers[path]
        entry = header[key]
        dtype = _TORCH_DTYPES.get(entry["dtype"])
        if dtype is None:  # rare dtypes: let safetensors handle them
            from safetensors import safe_open

            with safe_open(path, framework="pt") as fh:
                return fh.get_tensor(key)
        begin, end = entry["data_offsets"]
        out = torch.empty(entry["shape"], dtype=dtype)
        if end > begin:
            buf = memoryview(out.reshape(-1).view(torch.uint8).numpy())
            with open(path, "rb") as fh:
                fh.seek(start + begin)
                if fh.readinto(buf) != end - begin:
                    raise UserError(f"{str(path)!r} is truncated (tensor {key!r}); re-save the checkpoint")
        return out


_ST_CODES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file tensor by tensor.

    Why not ``safetensors.torch.save_file``: it first serialises every tensor of the file into
    one in-memory buffer, so writing a 260 MB embedding briefly needs 520 MB. Streaming the raw
    bytes keeps the offload mode's peak at one copy of the largest shard. The layout is the
    format's own: an 8-byte little-endian header length, a JSON header (names, dtypes, shapes,
    byte offsets; padded with spaces to a multiple of 8), then the tensors' bytes in order.
    """
    names = sorted(tensors)
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in names:
        t = tensors[name]
        if t.dtype not in _ST_CODES:
            raise ValueError(f"cannot write {name!r}: dtype {t.dtype} has no safetensors code here")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for name in names:
            t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
            if t.numel():
                fh.write(memoryview(t.view(torch.uint8).numpy()))


_TORCH_DTYPES = {code: dtype for dtype, code in _ST_CODES.items()}


class ShardWriter:
    """Writes ``model-XXXXX-of-NNNNN.safetensors`` shards and the index, in a known shard count."""

    def __init__(self, directory: Path, n_shards: int):
        self.directory = Path(directory)
        self.n_shards = n_shards
        self.written = 0
        self.weight_map: dict[str, str] = {}
        self.total_size = 0

    def write(self, tensors: dict[str, torch.Tensor]) -> str:
        if self.written >= self.n_shards:
            raise RuntimeError(f"more than the planned {self.n_shards} shards")
        self.written += 1
        name = f"model-{self.written:05d}-of-{self.n_shards:05d}.safetensors"
        write_safetensors(self.directory / name, tensors, metadata={"format": "pt"})
        for k, v in tensors.items():
            self.weight_map[k] = name
            self.total_size += v.numel() * v.element_size()
        return name

    def finish(self) -> None:
        if self.written != self.n_shards:
            raise RuntimeError(f"wrote {self.written} of {self.n_shards} planned shards")
        index = {"metadata": {"total_size": self.total_size}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.directory / INDEX).write_text(json.dumps(index, indent=2))


def group_by_size(keys: Iterable[str], sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Consecutive groups of keys of at most ``limit`` bytes each (a bigger tensor stands alone)."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for k in keys:
        if current and used + sizes[k] > limit:
            groups.append(current)
            current, used = [], 0
        current.append(k)
        used += sizes[k]
    if current:
        groups.append(current)
    return groups
