"""``pykern map``: a picture of a machine's physical memory (matplotlib, optional).

One panel per machine.  Its top part is the whole of RAM, one row per layer, drawn with
``Axes.broken_barh`` over physical addresses: System RAM banks, zones, reservations
(``/proc/iomem``), CMA areas and the part of them in use, kexec segments (placed in CMA, by
the walk, or in the crash reservation), the SOURCE and INDIRECTION pages of the entry list,
device tables (``tables()`` of a GIC, ``buffers()`` of a DMA device), and, after a reboot,
DMA scribbles and corrupted runs.

At whole-RAM scale a 16 MiB segment of a 16 GiB machine, a 64 KiB GIC table or a 1-byte
scribble is a sliver, so two things keep them visible at any RAM size:

- every bar is drawn at least :data:`MIN_WIDTH` of its axis wide;
- below the overview, one zoomed lane per region that matters (:func:`zoom_windows`): each
  kexec segment, each cluster of device tables, each cluster of corruption outside those,
  drawn at its own scale with its own addresses and labels, and marked on the overview by a
  lettered box.

The x axis of the overview is the banks laid back to back (holes between banks are squeezed
out and marked with dashed lines); tick labels are physical addresses.  ``--modes`` stacks
the CMA and the NO_CMA run of the same scenario.  In the "after reboot" row scribbles fill
the upper half and corrupted runs the lower half, so neither hides the other.

matplotlib is imported only inside :func:`render`; the figure is drawn with the Agg canvas
(SVG through matplotlib's SVG backend), never through pyplot, and SVG text stays text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..constants import PAGE_SIZE

__all__ = ["MapData", "Window", "snapshot", "render", "zoom_windows"]

MiB = 1 << 20

#: Layer rows of the overview, top to bottom.
ROWS = ("System RAM", "zones", "reserved", "CMA", "kexec segments", "page list", "devices",
        "after reboot")
#: Layer rows of a zoomed lane.
ZOOM_ROWS = ("reserved", "CMA", "kexec segments", "devices", "after reboot")
#: Narrowest bar, as a fraction of its axis: a 1-byte scribble stays a visible mark.
MIN_WIDTH = 0.004
#: Most zoomed lanes per panel (three per line).
MAX_WINDOWS = 9
#: Device tables, or corruption, closer than this are zoomed as one region.
CLUSTER_GAP = 2 * MiB

COLOURS = {
    "ram": "#d9d9d9", "zone-DMA": "#c6dbef", "zone-DMA32": "#9ecae1",
    "zone-Normal": "#6baed6", "zone-Movable": "#fdd0a2", "Kernel": "#756bb1",
    "Crash kernel": "#bcbddc", "reserved": "#969696", "cma": "#c7e9c0",
    "cma-used": "#41ab5d", "seg-CMA": "#238b45", "seg-walk": "#fd8d3c",
    "seg-crash": "#9e9ac8", "source": "#2171b5", "indirection": "#e7298a",
    "gic": "#8c6d31", "dma": "#d6c14a", "scribble": "#e31a1c", "corrupted": "#000000",
    "window": "#525252",
}

#: What each colour means, in legend order.
LEGEND = {
    "ram": "System RAM bank", "zone-DMA": "zone DMA", "zone-DMA32": "zone DMA32",
    "zone-Normal": "zone Normal", "zone-Movable": "zone Movable",
    "Kernel": "running kernel (code, data)", "Crash kernel": "crashkernel= reservation",
    "reserved": "other reserved memory", "cma": "CMA area (free)",
    "cma-used": "CMA area, allocated", "seg-CMA": "kexec segment in CMA (nothing to copy)",
    "seg-walk": "kexec segment placed by the walk (copied at reboot)",
    "seg-crash": "kexec segment in the crash reservation",
    "source": "SOURCE pages (the copies the reboot moves)",
    "indirection": "INDIRECTION pages (the entry list)", "gic": "GIC tables (RAM the GIC writes)",
    "dma": "DMA device buffers", "scribble": "device write after shutdown (scribble)",
    "corrupted": "corrupted run (RAM differs from the loaded image)",
    "window": "zoomed region (lane below)",
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
    #: (device name, table kind, phys, size)
    device_tables: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: device name -> "gic" (it has tables()) or "dma" (it has buffers())
    device_kinds: dict[str, str] = field(default_factory=dict)
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
                "corrupted": len(self.corrupted),
                "windows": [w.to_json() for w in zoom_windows(self)]}


@dataclass
class Window:
    """A zoomed region: ``[start, end)`` physical, what it was made for, a letter."""

    letter: str
    start: int
    end: int
    what: str
    #: counts of the things inside: segments, device tables, scribbles, corrupted runs
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"letter": self.letter, "start": self.start, "end": self.end,
                "what": self.what, **self.counts}

    def title(self) -> str:
        """Two lines: the letter and what the window is for; where, how big, what is in it."""
        size = self.end - self.start
        extent = f"{size / MiB:.3g} MiB" if size >= MiB else f"{size / 1024:.3g} KiB"
        words = {"tables": "tables", "scribbles": "scribbles", "corrupted": "corrupted runs"}
        found = [f"{n} {words.get(k, k)}" for k, n in self.counts.items()
                 if n and k != "segments"]
        return (f"{self.letter}: {self.what}\n{self.start:#x}, {extent}"
                + (f": {', '.join(found)}" if found else ""))


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
    from ..mm.cma import for_each_set_bitrange
    return for_each_set_bitrange(bits)


def snapshot(runner: Any, label: str = "") -> MapData:
    """Capture the layers of ``runner.machine`` (a Runner from :mod:`pykern.scenario`)."""
    from ..scenario import placement
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
            data.device_kinds[name] = "gic"
            data.device_tables += [(name, _table_label(kind, owner), int(phys), int(size))
                                   for kind, phys, size, owner, *_ in dev.tables()]
        if hasattr(dev, "buffers"):
            data.device_kinds.setdefault(name, "dma")
            data.device_tables += [(name, str(kind), int(phys), int(size))
                                   for kind, phys, size in dev.buffers()]
    result = runner.last_result
    if result is not None:
        data.scribbles = list(result.scribbles)
        data.corrupted = list(result.corrupted)
    return data


def _table_label(kind: object, owner: object) -> str:
    """``pending cpu2``, ``itt eth0``, ``prop``: a GIC table's kind and its owner."""
    if owner is None:
        return str(kind)
    return f"{kind} cpu{owner}" if isinstance(owner, int) else f"{kind} {owner}"


# ------------------------------------------------------------------------- zoom windows
def _cluster(ranges: Iterable[Range], gap: int) -> list[Range]:
    """Ranges closer than ``gap`` merged into one."""
    out: list[Range] = []
    for s, e in sorted(ranges):
        if out and s - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _inside(r: Range, windows: Iterable[Range]) -> bool:
    return any(ws <= r[0] and r[1] <= we for ws, we in windows)


def zoom_windows(data: MapData) -> list[Window]:
    """The regions one panel zooms into, in address order, lettered A, B, ...

    One per kexec segment; one per cluster of a device's tables or buffers (tables closer
    than :data:`CLUSTER_GAP` are one cluster), unless the cluster fills most of a segment
    lane already; one per cluster of scribbles and corrupted runs that no other window
    holds.  Clusters are widened (coarser gaps) until at most :data:`MAX_WINDOWS` remain.
    Each window is padded by a sixteenth of its size (at least a page) on both sides.
    """
    segs = [(mem, mem + size, f"segment {idx} ({where})")
            for idx, mem, size, where in data.segments if size > 0]
    seg_ranges = [(s, e) for s, e, _ in segs]
    by_dev: dict[str, list[Range]] = {}
    for name, _, phys, size in data.device_tables:
        by_dev.setdefault(name, []).append((phys, phys + max(1, size)))
    damage = [(p, p + max(1, n)) for _, p, n in data.scribbles] + \
        [(p, p + max(1, n)) for p, n, _ in data.corrupted]
    gap = CLUSTER_GAP
    while True:
        found: list[tuple[int, int, str]] = list(segs)
        for name, ranges in sorted(by_dev.items()):
            kind = "tables" if data.device_kinds.get(name) == "gic" else "buffers"
            for s, e in _cluster(ranges, gap):
                host = [(ws, we) for ws, we in seg_ranges if ws <= s and e <= we]
                if host and (e - s) * 8 > host[0][1] - host[0][0]:
                    continue         # big enough to read in its segment's lane
                found.append((s, e, f"{name} {kind}"))
        covered = [(s, e) for s, e, _ in found]
        loose = [r for r in damage if not _inside(r, covered)]
        found += [(s, e, "corruption") for s, e in _cluster(loose, gap)]
        if len(found) <= MAX_WINDOWS or gap > (1 << 48):
            break
        gap *= 4
    found.sort()
    found = found[:MAX_WINDOWS]
    out = []
    for k, (s, e, what) in enumerate(found):
        pad = max(PAGE_SIZE, (e - s) // 16)
        bank = next(((b, be) for b, be in data.banks if b <= s < be), (0, 1 << 64))
        lo, hi = max(bank[0], s - pad), min(bank[1], e + pad)
        counts = {
            "segments": sum(1 for ss, se in seg_ranges if ss < hi and se > lo),
            "tables": sum(1 for _, _, p, n in data.device_tables if p < hi and p + n > lo),
            "scribbles": sum(1 for _, p, n in data.scribbles if p < hi and p + n > lo),
            "corrupted": sum(1 for p, n, _ in data.corrupted if p < hi and p + n > lo),
        }
        out.append(Window(chr(ord("A") + k), lo, hi, what, counts))
    return out


# ------------------------------------------------------------------------------- scales
class _Scale(Protocol):
    width: float

    def bars(self, ranges: Iterable[Range]) -> list[tuple[float, float]]: ...


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
        self.width = total / MiB

    def x(self, phys: int) -> float:
        """x (MiB) of ``phys``; clamps into the nearest bank."""
        for (b, e), off in zip(self.banks, self.offsets):
            if phys < e:
                return (off + max(0, phys - b)) / MiB
        return self.total / MiB

    def phys(self, x: float) -> int:
        """Inverse of :meth:`x`."""
        pos = int(x * MiB)
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
            out.append(off / MiB)
            first = -(-b // (step << 20)) * (step << 20)
            for phys in range(first, e, step << 20):
                x = (off + phys - b) / MiB
                if all(abs(x - t) > step / 2 for t in out):
                    out.append(x)
        return sorted(out)

    def bars(self, ranges: Iterable[Range]) -> list[tuple[float, float]]:
        """(x, width) per range clipped to each bank, at least MIN_WIDTH of the axis."""
        minimum = self.width * MIN_WIDTH
        out = []
        for start, end in ranges:
            for b, e in self.banks:
                lo, hi = max(start, b), min(end, e)
                if hi > lo:
                    x0, x1 = self.x(lo), self.x(hi - 1) + 1 / MiB
                    out.append((x0, max(x1 - x0, minimum)))
        return out


class _Zoom:
    """x = physical address within one window (no holes: a window is small)."""

    def __init__(self, window: Window) -> None:
        self.start, self.end = window.start, window.end
        self.width = float(self.end - self.start)

    def bars(self, ranges: Iterable[Range]) -> list[tuple[float, float]]:
        minimum = self.width * MIN_WIDTH
        out = []
        for start, end in ranges:
            lo, hi = max(start, self.start), min(end, self.end)
            if hi > lo:
                out.append((float(lo), max(float(hi - lo), minimum)))
        return out


# ------------------------------------------------------------------------------ drawing
#: About how wide (points) the overview and a zoomed lane are drawn: labels that would not
#: fit inside their bar are left out (or shortened).
_OVERVIEW_PT, _ZOOM_PT = 880.0, 250.0


def _draw_layers(ax: Any, data: MapData, scale: _Scale, rows: Sequence[str],
                 zoomed: bool) -> set[str]:
    """Draw the layers of ``data`` that have a row in ``rows``; returns the legend keys used.
    """
    used: set[str] = set()
    nrows = len(rows)
    height = 0.7
    fontsize = 6 if zoomed else 7

    def row_y(name: str) -> float:
        return nrows - 1 - rows.index(name) - height / 2

    def bars(row: str, ranges: Iterable[Range], colour: str, *, half: str = "",
             **kw: Any) -> list[tuple[float, float]]:
        if row not in rows:
            return []
        xs = scale.bars(ranges)
        if xs:
            y, h = row_y(row), height
            if half:
                h = height / 2
                y = y + h if half == "upper" else y
            ax.broken_barh(xs, (y, h), facecolors=COLOURS[colour], **kw)
            used.add(colour)
        return xs

    points = _ZOOM_PT if zoomed else _OVERVIEW_PT

    def label(row: str, x: float, w: float, text: str, short: str | None = None) -> None:
        if row not in rows:
            return
        room = w / scale.width * points        # the bar's width in points
        for candidate in (text, short):
            if candidate and len(candidate) * fontsize * 0.6 + 4 < room:
                ax.text(x + w / 2, row_y(row) + height / 2, candidate, ha="center",
                        va="center", fontsize=fontsize, clip_on=True)
                return

    for x, w in bars("System RAM", data.banks, "ram", edgecolor="black", linewidth=0.5):
        label("System RAM", x, w, "System RAM")
    for name, s, e in data.zones:
        key = f"zone-{name}" if f"zone-{name}" in COLOURS else "zone-Normal"
        for x, w in bars("zones", [(s, e)], key, edgecolor="white"):
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
        for x, w in bars("kexec segments", [(mem, mem + size)], f"seg-{where}",
                         edgecolor="black", linewidth=0.4):
            label("kexec segments", x, w, f"segment {idx} ({where})", str(idx))
    bars("page list", data.sources, "source")
    bars("page list", data.indirection, "indirection")
    for dev, kind, phys, size in data.device_tables:
        colour = data.device_kinds.get(dev, "dma")
        for x, w in bars("devices", [(phys, phys + size)], colour, edgecolor="white",
                         linewidth=0.3):
            if zoomed:
                label("devices", x, w, kind)
    bars("after reboot", [(p, p + n) for _, p, n in data.scribbles], "scribble",
         half="upper")
    bars("after reboot", [(p, p + n) for p, n, _ in data.corrupted], "corrupted",
         half="lower")
    ax.set_yticks([nrows - 1 - i for i in range(nrows)], list(rows), fontsize=fontsize + 1)
    ax.set_ylim(-0.6, nrows - 0.4)
    return used


def _mark_windows(ax: Any, axis: _Axis, windows: Sequence[Window], nrows: int) -> None:
    """Lettered boxes on the overview where the zoomed lanes are; letters of neighbouring
    boxes are stacked so they do not overprint each other."""
    from matplotlib.patches import Rectangle
    placed: list[tuple[float, int]] = []
    for win, (x, w) in zip(windows, axis.bars([(win.start, win.end) for win in windows])):
        ax.add_patch(Rectangle((x, -0.55), w, nrows - 0.1, fill=False,
                               edgecolor=COLOURS["window"], linestyle="--", linewidth=0.8))
        centre = x + w / 2
        near = {level for px, level in placed if abs(px - centre) < axis.width * 0.012}
        level = min(k for k in range(len(placed) + 1) if k not in near)
        placed.append((centre, level))
        ax.text(centre, nrows - 0.42 + 0.45 * level, win.letter, ha="center", va="bottom",
                fontsize=8, fontweight="bold", color=COLOURS["window"], clip_on=False)


def _hex_ticks(lo: int, hi: int, target: int = 3) -> list[int]:
    """Round addresses for a zoomed lane's axis: multiples of a power of two, ``target`` or
    fewer of them."""
    step = PAGE_SIZE
    while (hi - lo) // step > target:
        step <<= 1
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


def _panel_title(data: MapData) -> str:
    title = data.label + " — " if data.label else ""
    return title + (f"{data.arch}, generation {data.generation}"
                    + (", halted" if data.halted else "") + f", kexec image {data.image_state}"
                    + f"; {len(data.scribbles)} scribbles, {len(data.corrupted)} corrupted runs")


def render(panels: Sequence[MapData], path: Path | str, *, title: str = "") -> None:
    """Draw ``panels`` one above the other into ``path`` (format from its suffix): each
    panel's overview, then its zoomed lanes three to a line.

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
    windows = [zoom_windows(p) for p in panels]
    lines = [-(-len(w) // 3) for w in windows]
    ratios: list[float] = []
    for n in lines:
        ratios += [2.9] + [1.8] * n
    fig = Figure(figsize=(14, 0.9 + sum(ratios)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(ratios), 3, height_ratios=ratios)
    used: set[str] = set()
    row = 0
    hexfmt = FuncFormatter(lambda x, _pos: f"{int(x):#x}")
    for data, wins, n in zip(panels, windows, lines):
        ax = fig.add_subplot(grid[row, :])
        used |= _draw_layers(ax, data, axis, ROWS, zoomed=False)
        for off in axis.offsets[1:]:
            ax.axvline(off / MiB, color="black", linestyle="--", linewidth=0.6)
        ax.set_xlim(0, axis.width)
        if wins:
            _mark_windows(ax, axis, wins, len(ROWS))
            used.add("window")
        ax.set_xticks(axis.ticks())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{axis.phys(x):#x}"))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("physical address (holes between banks squeezed out)", fontsize=7)
        top = max((len(wins) > 1) * 2, 1)
        ax.set_title(_panel_title(data), fontsize=9, loc="left", pad=6 + 6 * top)
        for k, win in enumerate(wins):
            zax = fig.add_subplot(grid[row + 1 + k // 3, k % 3])
            used |= _draw_layers(zax, data, _Zoom(win), ZOOM_ROWS, zoomed=True)
            zax.set_xlim(win.start, win.end)
            zax.set_xticks([float(t) for t in _hex_ticks(win.start, win.end)])
            zax.xaxis.set_major_formatter(hexfmt)
            zax.tick_params(axis="x", labelsize=6)
            zax.set_title(win.title(), fontsize=7, loc="left")
        row += 1 + n
    handles = [Patch(facecolor="none" if key == "window" else COLOURS[key],
                     edgecolor=COLOURS[key] if key == "window" else "black",
                     linestyle="--" if key == "window" else "-",
                     linewidth=0.6, label=text)
               for key, text in LEGEND.items() if key in used]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles) or 1),
               fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, format=path.suffix.lstrip(".").lower() or "png", dpi=110)
