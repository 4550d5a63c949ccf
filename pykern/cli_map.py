"""``pykern map``: a picture of a machine's physical memory (matplotlib, optional).

One panel per machine, one row per layer, drawn with ``Axes.broken_barh`` over physical
addresses: System RAM banks, zones, reservations (``/proc/iomem``), CMA areas and the part of
them in use, kexec segments (placed in CMA, by the walk, or in the crash reservation), the
SOURCE and INDIRECTION pages of the entry list, device tables (``tables()`` of a GIC,
``buffers()`` of a DMA device), and, after a reboot, DMA scribbles and corrupted runs.

The x axis is the banks laid back to back (holes between banks are squeezed out and marked
with dashed lines); tick labels are physical addresses.  Tiny ranges (a 1-byte scribble on a
GiB axis) are widened to stay visible.  ``--modes`` stacks the CMA and the NO_CMA run of the
same scenario, sharing the address axis, which reads better for an address map than two
panels left and right.

matplotlib is imported only inside :func:`render`; the figure is drawn with the Agg canvas
(SVG through matplotlib's SVG backend), never through pyplot, and SVG text stays text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MapData", "snapshot", "render"]

PAGE_SIZE = 4096

#: Layer rows, top to bottom.
ROWS = ("System RAM", "zones", "reserved", "CMA", "kexec segments", "page list", "devices",
        "after reboot")

COLOURS = {
    "ram": "#d9d9d9", "DMA": "#c6dbef", "DMA32": "#9ecae1", "Normal": "#6baed6",
    "Movable": "#fdd0a2", "Kernel": "#756bb1", "Crash kernel": "#bcbddc",
    "reserved": "#969696", "cma": "#c7e9c0", "cma-used": "#41ab5d", "seg-CMA": "#238b45",
    "seg-walk": "#fd8d3c", "seg-crash": "#9e9ac8", "source": "#2171b5",
    "indirection": "#e7298a", "device": "#8c6d31", "scribble": "#e31a1c",
    "corrupted": "#000000",
}

Range = tuple[int, int]  # [start, end) physical


@dataclass
class MapData:
    """What one panel shows, captured from a :class:`pykern.scenario.Runner`'s machine."""

    label: str
    arch: str
    generation: int
    halted: bool
    banks: list[Range]
    zones: list[tuple[str, int, int]] = field(default_factory=list)
    reserved: list[tuple[str, int, int]] = field(default_factory=list)
    cma: list[tuple[str, int, int]] = field(default_factory=list)
    cma_used: list[Range] = field(default_factory=list)
    segments: list[tuple[int, int, int, str]] = field(default_factory=list)
    image_state: str = "none"
    sources: list[Range] = field(default_factory=list)
    indirection: list[Range] = field(default_factory=list)
    device_tables: list[tuple[str, str, int, int]] = field(default_factory=list)
    scribbles: list[tuple[str, int, int]] = field(default_factory=list)
    corrupted: list[tuple[int, int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A summary for ``pykern map --json``."""
        return {"label": self.label, "arch": self.arch, "generation": self.generation,
                "halted": self.halted, "image": self.image_state,
                "banks": [list(b) for b in self.banks],
                "segments": [{"index": i, "mem": mem, "memsz": size, "placement": where}
                             for i, mem, size, where in self.segments],
                "cma_areas": [{"name": n, "start": s, "end": e} for n, s, e in self.cma],
                "source_runs": len(self.sources), "indirection_runs": len(self.indirection),
                "device_tables": len(self.device_tables), "scribbles": len(self.scribbles),
                "corrupted": len(self.corrupted)}


def _page_runs(addrs: Iterable[int]) -> list[Range]:
    """Merge page addresses into [start, end) runs."""
    runs: list[Range] = []
    for a in sorted(addrs):
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], a + PAGE_SIZE)
        elif not runs or a >= runs[-1][1]:
            runs.append((a, a + PAGE_SIZE))
    return runs


def _bitmap_runs(bits: bytes | bytearray) -> Iterable[Range]:
    """(first bit, end bit) of each run of set (1) entries in a CMA range's byte bitmap."""
    i, n = 0, len(bits)
    while i < n:
        start = bits.find(1, i)
        if start < 0:
            return
        end = bits.find(0, start)
        end = n if end < 0 else end
        yield start, end
        i = end


def snapshot(runner: Any, label: str = "") -> MapData:
    """Capture the layers of ``runner.machine`` (a Runner from :mod:`pykern.scenario`)."""
    from .scenario import placement
    m = runner.machine
    data = MapData(label=label, arch=m.arch, generation=m.generation, halted=bool(m.halted),
                   banks=[(b, b + s) for b, s in m.banks])
    for zone in getattr(m, "zones", []):
        if zone.zone_end_pfn > zone.zone_start_pfn:
            data.zones.append((zone.name, zone.zone_start_pfn * PAGE_SIZE,
                               zone.zone_end_pfn * PAGE_SIZE))
    try:
        for root in m.iomem_resources():
            for _, res in root.walk():
                if res is not root:
                    data.reserved.append((res.name, res.start, res.end + 1))
    except (RuntimeError, AttributeError, ValueError):
        data.reserved = [("reserved", b, e) for b, e in m.memblock.reserved]
    for area in getattr(m, "cma_areas", []):
        ranges = getattr(area, "ranges", [])
        for r in ranges:
            data.cma.append((area.name.strip(), r.base_pfn * PAGE_SIZE,
                             (r.base_pfn + r.count) * PAGE_SIZE))
            step = PAGE_SIZE << area.order_per_bit
            base = r.base_pfn * PAGE_SIZE
            data.cma_used += [(base + s * step, base + e * step)
                              for s, e in _bitmap_runs(bytes(r.bitmap))]
        if not ranges:
            data.cma.append((area.name.strip(), area.base_pfn * PAGE_SIZE,
                             (area.base_pfn + area.count) * PAGE_SIZE))
    current = [im for im in (m.kexec_image, m.kexec_crash_image) if im is not None] \
        if not m.halted else []
    images = current or ([runner.last_image] if runner.last_image is not None else [])
    data.image_state = "loaded" if current else ("executed" if images else "none")
    for image in images:
        crash = image.type == "crash"
        data.segments += [(i, s.mem, s.memsz, placement(bool(s.cma), crash))
                          for i, s in enumerate(image.segments)]
    if current and m.kexec_image is not None:
        entries = m.kexec_image.entries()
        data.sources = _page_runs(a for k, a in entries if k == "SOURCE")
        data.indirection = _page_runs(a for k, a in entries if k == "INDIRECTION")
    for name, dev in getattr(m, "devices", {}).items():
        if hasattr(dev, "tables"):
            data.device_tables += [(name, str(kind), int(phys), int(size))
                                   for kind, phys, size, *_ in dev.tables()]
        if hasattr(dev, "buffers"):
            data.device_tables += [(name, str(kind), int(phys), int(size))
                                   for kind, phys, size in dev.buffers()]
    result = runner.last_result
    if result is not None:
        data.scribbles = list(result.scribbles)
        data.corrupted = list(result.corrupted)
    return data


class _Axis:
    """Physical address ↔ x position with the holes between banks squeezed out (MiB)."""

    def __init__(self, banks: Sequence[Range]) -> None:
        self.banks = sorted(banks)
        self.offsets: list[int] = []
        total = 0
        for b, e in self.banks:
            self.offsets.append(total)
            total += e - b
        self.total = total

    def x(self, phys: int) -> float:
        """x (MiB) of ``phys``; clamps into the nearest bank."""
        for (b, e), off in zip(self.banks, self.offsets):
            if phys < e:
                return (off + max(0, phys - b)) / (1 << 20)
        return self.total / (1 << 20)

    def phys(self, x: float) -> int:
        """Inverse of :meth:`x`."""
        pos = int(x * (1 << 20))
        for (b, e), off in zip(self.banks, self.offsets):
            if pos < off + (e - b):
                return b + max(0, pos - off)
        b, e = self.banks[-1]
        return e

    def ticks(self, target: int = 8) -> list[float]:
        """Tick positions: each bank's start and power-of-two MiB steps inside banks."""
        total_mib = max(1, self.total >> 20)
        step = 1
        while total_mib // step > target:
            step *= 2
        out: list[float] = []
        for (b, e), off in zip(self.banks, self.offsets):
            out.append(off / (1 << 20))
            first = -(-b // (step << 20)) * (step << 20)
            for phys in range(first, e, step << 20):
                x = (off + phys - b) / (1 << 20)
                if all(abs(x - t) > step / 2 for t in out):
                    out.append(x)
        return sorted(out)

    def bars(self, ranges: Iterable[Range]) -> list[tuple[float, float]]:
        """(x, width) per range clipped to each bank, at least 0.25% of the axis wide."""
        minimum = self.total / (1 << 20) * 0.0025
        out = []
        for start, end in ranges:
            for b, e in self.banks:
                lo, hi = max(start, b), min(end, e)
                if hi > lo:
                    x0, x1 = self.x(lo), self.x(hi - 1) + 1 / (1 << 20)
                    out.append((x0, max(x1 - x0, minimum)))
        return out


def _draw_panel(ax: Any, data: MapData, axis: _Axis) -> set[str]:
    """Draw one machine; returns the legend keys used."""
    used: set[str] = set()
    nrows = len(ROWS)
    height = 0.7

    def row_y(name: str) -> float:
        return nrows - 1 - ROWS.index(name) - height / 2

    def bars(row: str, ranges: Iterable[Range], colour: str, key: str | None = None,
             **kw: Any) -> list[tuple[float, float]]:
        xs = axis.bars(ranges)
        if xs:
            ax.broken_barh(xs, (row_y(row), height), facecolors=COLOURS[colour], **kw)
            used.add(key or colour)
        return xs

    def label(row: str, x: float, w: float, text: str, short: str | None = None) -> None:
        frac = w / (axis.total / (1 << 20))
        if frac > 0.06 or (short is not None and frac > 0.008):
            ax.text(x + w / 2, row_y(row) + height / 2, text if frac > 0.06 else short,
                    ha="center", va="center", fontsize=7, clip_on=True)

    for x, w in bars("System RAM", data.banks, "ram", edgecolor="black", linewidth=0.5):
        label("System RAM", x, w, "System RAM")
    for name, s, e in data.zones:
        colour = name if name in COLOURS else "Normal"
        for x, w in bars("zones", [(s, e)], colour, "zone", edgecolor="white"):  # no legend
            label("zones", x, w, name)
    for name, s, e in data.reserved:
        colour = ("Kernel" if name.startswith("Kernel") else
                  "Crash kernel" if name == "Crash kernel" else "reserved")
        for x, w in bars("reserved", [(s, e)], colour):
            label("reserved", x, w, name)
    for name, s, e in data.cma:
        for x, w in bars("CMA", [(s, e)], "cma", edgecolor="#238b45"):
            label("CMA", x, w, f"CMA {name}")
    bars("CMA", data.cma_used, "cma-used")
    for idx, mem, size, where in data.segments:
        key = f"seg-{where}"
        for x, w in bars("kexec segments", [(mem, mem + size)], key, edgecolor="black",
                         linewidth=0.4):
            label("kexec segments", x, w, f"segment {idx}", str(idx))
    bars("page list", data.sources, "source")
    bars("page list", data.indirection, "indirection")
    for _, kind, phys, size in data.device_tables:
        bars("devices", [(phys, phys + size)], "device")
    bars("after reboot", [(p, p + n) for _, p, n in data.scribbles], "scribble")
    bars("after reboot", [(p, p + n) for p, n, _ in data.corrupted], "corrupted")
    for off in axis.offsets[1:]:
        ax.axvline(off / (1 << 20), color="black", linestyle="--", linewidth=0.6)
    ax.set_yticks([nrows - 1 - i for i in range(nrows)], list(ROWS), fontsize=8)
    ax.set_ylim(-0.6, nrows - 0.4)
    ax.set_xlim(0, axis.total / (1 << 20))
    title = data.label + " — " if data.label else ""
    title += (f"{data.arch}, generation {data.generation}"
              + (", halted" if data.halted else "") + f", kexec image {data.image_state}")
    ax.set_title(title, fontsize=9, loc="left")
    return used


_LEGEND = {
    "ram": "System RAM bank", "Kernel": "kernel image",
    "Crash kernel": "Crash kernel", "reserved": "reserved", "cma": "CMA area",
    "cma-used": "CMA in use", "seg-CMA": "segment in CMA", "seg-walk": "segment (walk)",
    "seg-crash": "segment (crash)", "source": "SOURCE pages",
    "indirection": "INDIRECTION pages", "device": "device tables",
    "scribble": "DMA scribble", "corrupted": "corrupted run",
}


def render(panels: Sequence[MapData], path: Path | str, *, title: str = "") -> None:
    """Draw ``panels`` one above the other into ``path`` (format from its suffix).

    :raises ImportError: matplotlib is missing (``pip install 'pykern-emu[plot]'``).
    :raises OSError: the file cannot be written.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    path = Path(path)
    banks = sorted({b for p in panels for b in p.banks})
    axis = _Axis(banks)
    fig = Figure(figsize=(13, 0.6 + 2.9 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)
    used: set[str] = set()
    for ax, data in zip(axes[:, 0], panels):
        used |= _draw_panel(ax, data, axis)
    axes[-1, 0].set_xticks(axis.ticks())
    axes[-1, 0].xaxis.set_major_formatter(
        FuncFormatter(lambda x, _pos: f"{axis.phys(x):#x}"))
    axes[-1, 0].set_xlabel("physical address (holes between banks squeezed out)", fontsize=8)
    for ax in axes[:, 0]:
        ax.tick_params(axis="x", labelsize=7)
    handles = [Patch(facecolor=COLOURS[key], edgecolor="black",
                     linewidth=0.3, label=text) for key, text in _LEGEND.items() if key in used]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(8, len(handles) or 1),
               fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
