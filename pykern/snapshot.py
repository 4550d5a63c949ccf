"""Machine snapshots: ``m.save(path)``, ``Machine.restore(path)`` and ``m.fork()``.

No kernel function is modelled here: a snapshot is pykern's own tooling.  Like a
hibernation image, which keeps only the pages that hold data, a snapshot stores the RAM
sparsely: chunks that are all zero are left out, the rest is compressed with zlib.
Everything else on the machine (memmap arrays, zones and free lists in their order, CMA
areas and bitmaps, tasks and pins, kexec images, devices with their latched registers and
traces, the kernel log, the generation, the seed, every random generator's state, fixes,
and any attribute added later) is the machine's object graph, pickled whole.  Nothing is
listed by hand, so new attributes are saved without extra work; objects pickle cannot
carry are handled generically:

- the RAM ``mmap`` is written as chunks and reattached on load;
- module objects (the compiled ``memops`` module the RAM helpers hold) are saved by name
  and imported again; a compiled module that is unavailable where the file is restored
  is replaced by its pure-Python twin, which gives identical results;
- bound methods are saved as (object, method name);
- a class that holds something else (a generator, a closure) gives itself
  ``__getstate__``/``__setstate__``.  Saving a machine that still holds such an object
  raises ``TypeError`` naming the attribute path.  A halted machine needs nothing
  special: it refuses calls by checking its ``halted`` flag, which is saved like any
  other attribute.

File layout (format 1), integers little-endian::

    magic    16 bytes   b"\\x89PYKERN-SNAP\\r\\n\\x1a\\n"
    header   u32 length, then UTF-8 JSON: format, pykern version, python version,
             ram_size, chunk_size, and for information arch, generation, halted, seed
    records  1-byte tag, u64 payload length, payload:
             b"S"  the object graph, a pickle (protocol 5) in pieces of up to 1 MiB, each
                   a byte 1 (zlib-compressed) or 0 (as it is), u32 length, the bytes
             b"Z"  a RAM chunk: u64 offset into the RAM buffer, then zlib-compressed bytes
             b"R"  a RAM chunk zlib would not shrink: u64 offset, then the bytes as they are
    end      tag b"E", length 4, then a u32 CRC-32 of every byte before it

A file is restored only by the pykern version that wrote it (the object graph follows the
classes of that version); a different version, another format, a wrong magic, a truncated
or corrupt file all raise :class:`SnapshotError` (a ``ValueError``) and change nothing.

A snapshot holds a pickle.  The loader only rebuilds pykern's own classes and a short list
of standard containers, so a damaged or foreign file cannot import arbitrary modules; even
so, restore only files you trust, as with any pickle.
"""

from __future__ import annotations

import importlib
import io
import json
import mmap
import os
import pickle
import struct
import sys
import zlib
from collections.abc import Iterator
from types import BuiltinMethodType, FunctionType, MethodType, ModuleType
from typing import IO, TYPE_CHECKING, Any
from .errors import SnapshotError
from .mm.memory import host_address, written_runs

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["FORMAT_VERSION", "MAGIC", "CHUNK_SIZE", "SnapshotError", "save", "restore",
           "fork", "read_header"]

MAGIC = b"\x89PYKERN-SNAP\r\n\x1a\n"
#: Bumped whenever the file layout changes.
FORMAT_VERSION = 1
#: RAM is stored in chunks of this many bytes; all-zero chunks are left out.
CHUNK_SIZE = 64 << 10
_PROTOCOL = 5
_LEVEL = 1                      # zlib level: RAM is mostly zeros, patterns or random bytes
_REC = struct.Struct("<cQ")     # record tag, payload length
_OFF = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_MAX_HEADER = 1 << 16
_ZERO = bytes(CHUNK_SIZE)
_SAMPLE = 4096                  # bytes compressed to decide whether a chunk is worth it

#: Compiled modules and their pure-Python twins (identical results, pykern._fast).
_TWINS = {"pykern._fast._memops_c": "pykern._fast._memops_py",
          "pykern._fast._relocate_c": "pykern._fast._relocate_py"}


def _pykern_version() -> str:
    from . import __version__
    return __version__


def _is_pykern(module: str) -> bool:
    return module == "pykern" or module.startswith("pykern.")


def _bound_method(obj: Any, name: str) -> Any:
    """Rebuild a bound method saved as (object, name)."""
    if not isinstance(name, str) or (name.startswith("__") and name.endswith("__")):
        raise pickle.UnpicklingError(f"a bound method named {name!r} is not restored")
    return getattr(obj, name)


# ------------------------------------------------------------------ the object graph
class _Pickler(pickle.Pickler):
    """Pickles a machine's object graph; the RAM buffer and modules go by reference."""

    def __init__(self, file: IO[bytes], ram: Any) -> None:
        super().__init__(file, protocol=_PROTOCOL)
        self._ram = ram

    def persistent_id(self, obj: Any) -> Any:
        if obj is self._ram:
            return "ram"
        if isinstance(obj, ModuleType):
            if not _is_pykern(obj.__name__):
                raise pickle.PicklingError(f"module {obj.__name__} is not a pykern module")
            return ("module", obj.__name__)
        if isinstance(obj, mmap.mmap):
            raise pickle.PicklingError("an mmap other than the machine's RAM")
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (MethodType, BuiltinMethodType)):
            owner = getattr(obj, "__self__", None)
            if owner is not None and not isinstance(owner, ModuleType):
                name = obj.__name__
                if name.startswith("__") and not name.endswith("__"):
                    cls = obj.__qualname__.rsplit(".", 1)[0].lstrip("_")
                    name = f"_{cls}{name}"          # a name-mangled private method
                if name.endswith("__") or getattr(owner, name, None) != obj:
                    raise pickle.PicklingError(f"bound method {obj.__qualname__} cannot be "
                                               "found again by its name")
                return _bound_method, (owner, name)
        if isinstance(obj, FunctionType) and "<locals>" in obj.__qualname__:
            raise pickle.PicklingError(f"local function {obj.__qualname__}")
        return NotImplemented


_STDLIB = {("collections", "OrderedDict"), ("collections", "deque"),
           ("collections", "defaultdict"), ("collections", "Counter"), ("array", "array"),
           ("array", "_array_reconstructor"), ("random", "Random"),
           ("copyreg", "_reconstructor"), ("functools", "partial"),
           ("fractions", "Fraction"), ("types", "SimpleNamespace")}
_BUILTINS = {"set", "frozenset", "bytearray", "complex", "range", "slice", "object", "int",
             "float", "str", "bytes", "list", "dict", "tuple", "bool"}


class _Unpickler(pickle.Unpickler):
    """Rebuilds the graph over a new RAM buffer; only pykern and a few stdlib classes."""

    def __init__(self, file: IO[bytes], ram: Any) -> None:
        super().__init__(file)
        self._ram = ram
        self.fell_back: list[str] = []

    def persistent_load(self, pid: Any) -> Any:
        if pid == "ram":
            return self._ram
        if (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "module"
                and isinstance(pid[1], str) and _is_pykern(pid[1])):
            name = pid[1]
            if name in _TWINS:
                from . import _fast
                compiled = (_fast.memops_c if name.endswith("_memops_c") else _fast.relocate_c)
                if compiled is None:              # not built here, or PYKERN_NO_EXTENSIONS=1
                    self.fell_back.append(name)
                    name = _TWINS[name]
            return importlib.import_module(name)
        raise pickle.UnpicklingError(f"unknown persistent reference {pid!r}")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _STDLIB:
            return super().find_class(module, name)
        if module == "builtins":
            import builtins
            obj = getattr(builtins, name, None)
            if name in _BUILTINS or (isinstance(obj, type) and issubclass(obj, BaseException)):
                return obj
        elif _is_pykern(module) and not any(p.startswith("__") for p in name.split(".")):
            obj = super().find_class(module, name)
            if callable(obj) and _is_pykern(str(getattr(obj, "__module__", ""))):
                return obj
        raise pickle.UnpicklingError(f"{module}.{name} is not something a pykern snapshot "
                                     "holds")


class _Shallow(_Pickler):
    """Pickles one object alone: everything it refers to stands in as a reference."""

    _ATOMS = (type(None), bool, int, float, complex, str, bytes)

    def __init__(self, file: IO[bytes], ram: Any, node: Any) -> None:
        super().__init__(file, ram)
        self._node = node

    def persistent_id(self, obj: Any) -> Any:
        if obj is self._node:
            return super().persistent_id(obj)
        return None if isinstance(obj, self._ATOMS) else "ref"


def _children(obj: Any) -> list[tuple[str, Any]]:
    """(label, value) of what pickling ``obj`` would save next."""
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, (MethodType, BuiltinMethodType)):
        return [(".__self__", getattr(obj, "__self__", None))]
    if isinstance(obj, (ModuleType, type, FunctionType)):
        return []                               # saved by name
    getstate = getattr(obj, "__getstate__", None)
    try:
        state = getstate() if getstate is not None else getattr(obj, "__dict__", None)
    except Exception:
        return []
    merged: dict[str, Any] = {}
    for part in (state if isinstance(state, tuple) else (state,)):
        if isinstance(part, dict):
            merged.update(part)
    return [(f".{k}", v) for k, v in merged.items()]


def _locate(root: Any, ram: Any) -> str:
    """Best effort: the attribute path of the first object that pickle cannot carry."""
    seen = {id(ram)}
    stack: list[tuple[str, Any]] = [("m", root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _Shallow._ATOMS):
            continue
        seen.add(id(obj))
        try:
            _Shallow(io.BytesIO(), ram, obj).dump(obj)
        except Exception:
            return path
        stack += reversed([(path + label, child) for label, child in _children(obj)])
    return "m"


def _dump_state(m: Machine) -> bytes:
    buf = io.BytesIO()
    try:
        _Pickler(buf, m.ram).dump(m)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(f"cannot snapshot {_locate(m, m.ram)}: {exc} (give its class "
                        "__getstate__/__setstate__)") from None
    return buf.getvalue()


def _load_state(data: bytes, ram: Any, where: str) -> Machine:
    from .machine import Machine
    up = _Unpickler(io.BytesIO(data), ram)
    try:
        m = up.load()
    except Exception as exc:
        raise SnapshotError(f"{where}: the saved machine cannot be rebuilt by pykern "
                            f"{_pykern_version()}: {type(exc).__name__}: {exc}") from None
    if not isinstance(m, Machine):
        raise SnapshotError(f"{where}: the saved state is a {type(m).__name__}, not a Machine")
    if up.fell_back and m.extensions:
        raise SnapshotError(f"{where}: the machine was saved with extensions=True, but "
                            f"{', '.join(up.fell_back)} is not available here")
    return m


# ------------------------------------------------------------------ RAM
def _new_ram(size: int, where: str) -> mmap.mmap:
    try:
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, OverflowError, ValueError) as exc:
        raise SnapshotError(f"{where}: cannot map {size} bytes of emulated RAM ({exc})") \
            from None


def _touched_chunks(buf: mmap.mmap) -> list[int]:
    """Offsets of the chunks that hold a host page ever mapped (every chunk where that is
    unknown), ascending.

    A page of an anonymous private mapping that the host never faulted in reads as zeros
    (:func:`~pykern.mm.memory.written_runs`): the rest of the buffer is skipped without
    being read, so a mostly empty 16 GiB machine is quick.
    """
    out: list[int] = []
    for off, n in written_runs(host_address(buf), 0, len(buf)):
        first = max(off // CHUNK_SIZE * CHUNK_SIZE, out[-1] + CHUNK_SIZE if out else 0)
        out.extend(range(first, off + n, CHUNK_SIZE))
    return out


def _nonzero_chunks(buf: mmap.mmap) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of every chunk of ``buf`` holding a non-zero byte, ascending."""
    for off in _touched_chunks(buf):
        data = buf[off:off + CHUNK_SIZE]
        if data != _ZERO[:len(data)]:
            yield off, data


def _squeeze(data: bytes) -> bytes | None:
    """``data`` compressed, or None when a sample (then the result) says it will not shrink:
    kernel images and random payloads do not, and zlib is slow on them."""
    if len(data) > _SAMPLE and len(zlib.compress(data[:_SAMPLE], _LEVEL)) >= _SAMPLE * 15 // 16:
        return None
    packed = zlib.compress(data, _LEVEL)
    return packed if len(packed) < len(data) else None


def _pack_chunk(off: int, data: bytes) -> tuple[bytes, bytes]:
    """(tag, payload) of one RAM chunk."""
    packed = _squeeze(data)
    if packed is None:
        return b"R", _OFF.pack(off) + data
    return b"Z", _OFF.pack(off) + packed


_PIECE = 1 << 20
_PIECE_HDR = struct.Struct("<BI")


def _pack_state(state: bytes) -> list[bytes]:
    out = []
    view = memoryview(state)
    for pos in range(0, len(state), _PIECE):
        piece = bytes(view[pos:pos + _PIECE])
        packed = _squeeze(piece)
        data = piece if packed is None else packed
        out += [_PIECE_HDR.pack(packed is not None, len(data)), data]
    return out


def _unpack_state(payload: bytes, where: str) -> bytes:
    out, pos = [], 0
    while pos < len(payload):
        if pos + _PIECE_HDR.size > len(payload):
            raise SnapshotError(f"{where}: corrupt: the machine state is cut short")
        kind, n = _PIECE_HDR.unpack_from(payload, pos)
        pos += _PIECE_HDR.size
        data = payload[pos:pos + n]
        pos += n
        if len(data) != n or kind not in (0, 1):
            raise SnapshotError(f"{where}: corrupt: the machine state is damaged")
        if kind:
            d = zlib.decompressobj()
            try:
                data = d.decompress(data, _PIECE)
            except zlib.error:
                raise SnapshotError(f"{where}: corrupt: the machine state does not "
                                    "decompress") from None
            if not d.eof or d.unconsumed_tail:
                raise SnapshotError(f"{where}: corrupt: the machine state is damaged")
        out.append(data)
    return b"".join(out)


# ------------------------------------------------------------------ files
class _Writer:
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.crc = 0

    def put(self, data: bytes) -> None:
        self.f.write(data)
        self.crc = zlib.crc32(data, self.crc)

    def record(self, tag: bytes, *parts: bytes) -> None:
        self.put(_REC.pack(tag, sum(len(p) for p in parts)))
        for p in parts:
            self.put(p)


def save(m: Machine, path: str | os.PathLike[str]) -> None:
    """Write machine ``m`` to ``path`` (see the module docstring for the layout).

    The file is written next to ``path`` and renamed over it at the end, so a failed save
    leaves an existing file as it was.
    """
    path = os.fspath(path)
    state = _dump_state(m)
    header = {"format": FORMAT_VERSION, "pykern": _pykern_version(),
              "python": ".".join(map(str, sys.version_info[:3])),
              "ram_size": len(m.ram), "chunk_size": CHUNK_SIZE, "arch": m.arch,
              "generation": m.generation, "halted": bool(m.halted), "seed": m.seed}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            w = _Writer(f)
            w.put(MAGIC)
            raw = json.dumps(header, sort_keys=True).encode()
            w.put(_U32.pack(len(raw)) + raw)
            w.record(b"S", *_pack_state(state))
            for off, data in _nonzero_chunks(m.ram):
                w.record(*_pack_chunk(off, data))
            w.put(_REC.pack(b"E", 4))
            f.write(_U32.pack(w.crc))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _Reader:
    def __init__(self, f: IO[bytes], where: str) -> None:
        self.f = f
        self.where = where
        self.crc = 0
        self.left = os.fstat(f.fileno()).st_size

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise SnapshotError(f"{self.where}: truncated: the file ends inside {what}")
        data = self.f.read(n)
        if len(data) != n:
            raise SnapshotError(f"{self.where}: truncated: the file ends inside {what}")
        self.left -= n
        self.crc = zlib.crc32(data, self.crc)
        return data


def _check_header(r: _Reader) -> dict[str, Any]:
    where = r.where
    magic = r.take(len(MAGIC), "the magic") if r.left >= len(MAGIC) else b""
    if magic != MAGIC:
        raise SnapshotError(f"{where}: not a pykern machine snapshot (bad magic)")
    (n,) = _U32.unpack(r.take(4, "the header"))
    if n > _MAX_HEADER:
        raise SnapshotError(f"{where}: corrupt: a header of {n} bytes")
    try:
        header = json.loads(r.take(n, "the header"))
        fmt = header["format"]
    except (ValueError, TypeError, KeyError):
        raise SnapshotError(f"{where}: corrupt: the header is not a snapshot header") from None
    version = _pykern_version()
    if fmt != FORMAT_VERSION:
        raise SnapshotError(f"{where}: snapshot format {fmt!r} (written by pykern "
                            f"{header.get('pykern', '?')}); pykern {version} reads format "
                            f"{FORMAT_VERSION} only")
    if header.get("pykern") != version:
        raise SnapshotError(f"{where}: written by pykern {header.get('pykern')!r}; this is "
                            f"pykern {version}, and a snapshot is restored only by the "
                            "version that wrote it")
    size, chunk = header.get("ram_size"), header.get("chunk_size")
    if not (isinstance(size, int) and size > 0 and chunk == CHUNK_SIZE):
        raise SnapshotError(f"{where}: corrupt: ram_size {size!r}, chunk_size {chunk!r}")
    return dict(header)


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a snapshot (format, pykern version, RAM size, arch, generation,
    halted, seed) after checking the magic and the versions; SnapshotError otherwise."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _check_header(_Reader(f, path))


def restore(path: str | os.PathLike[str]) -> Machine:
    """The machine saved in ``path``; :class:`SnapshotError` for anything but a whole
    snapshot written by this pykern version (``FileNotFoundError`` if there is no file)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        r = _Reader(f, path)
        header = _check_header(r)
        size = header["ram_size"]
        ram = _new_ram(size, path)
        state: bytes | None = None
        while True:
            tag, n = _REC.unpack(r.take(_REC.size, "a record header"))
            if tag == b"E":
                crc = r.crc
                (stored,) = _U32.unpack(r.take(4, "the checksum")) if n == 4 else (None,)
                if stored != crc:
                    raise SnapshotError(f"{path}: corrupt: checksum mismatch")
                if r.left:
                    raise SnapshotError(f"{path}: corrupt: {r.left} bytes after the end")
                break
            if tag not in (b"S", b"Z", b"R"):
                raise SnapshotError(f"{path}: corrupt: unknown record {tag!r}")
            payload = r.take(n, f"a {tag.decode()} record")
            if tag == b"S":
                state = payload
                continue
            if n < _OFF.size:
                raise SnapshotError(f"{path}: corrupt: a RAM record of {n} bytes")
            (off,) = _OFF.unpack_from(payload)
            want = min(CHUNK_SIZE, size - off)
            if off % CHUNK_SIZE or off >= size:
                raise SnapshotError(f"{path}: corrupt: a RAM chunk at offset {off:#x}")
            data = payload[_OFF.size:]
            if tag == b"Z":
                d = zlib.decompressobj()
                try:
                    data = d.decompress(data, want)
                except zlib.error:
                    raise SnapshotError(f"{path}: corrupt: RAM chunk {off:#x} does not "
                                        "decompress") from None
                if not d.eof or d.unconsumed_tail:
                    data = b""
            if len(data) != want:
                raise SnapshotError(f"{path}: corrupt: RAM chunk {off:#x} has the wrong size")
            ram[off:off + want] = data
        if state is None:
            raise SnapshotError(f"{path}: corrupt: no machine state record")
        return _load_state(_unpack_state(state, path), ram, path)


def fork(m: Machine) -> Machine:
    """An independent copy of ``m`` in memory: a new RAM buffer with the same bytes (only
    the non-zero chunks are copied) and a deep copy of everything else."""
    state = _dump_state(m)
    ram = _new_ram(len(m.ram), "fork")
    for off, data in _nonzero_chunks(m.ram):
        ram[off:off + len(data)] = data
    return _load_state(state, ram, "fork")
