"""Self-contained HTML pages: charts over time, flame graphs, suspect tables.

A `Page` collects sections and renders one HTML document that needs no
network at all: its CSS and JavaScript (``html.css``, ``html.js`` beside
this module) are inlined, its drawings are SVG and HTML built in the
browser, and a Content-Security-Policy forbids every fetch (inline code is
allowed by its SHA-256 hash, nothing else is).  The ``pyleakhunt report``
command and the web report page (``/_leakhunt/``) both use it.

Everything the traced program named (file names, function names, source
lines, endpoint names) reaches the page only as JSON data, embedded so that
no string can end the ``<script>`` element that holds it, and the script
writes it with ``textContent``: it is always text, never markup.

Usage, the three kinds of section::

    from pyleakhunt.export import html

    page = html.Page("Memory of my service", ["pid 1234, 200 samples"])
    # html.Page(..., sources=False): no source line of the program in the page.

    # A chart of several series: points are (x, y); x is seconds from the
    # start with x_kind="time" (axis in s/min/h) or a plain number with
    # x_kind="count" (requests served...); y is bytes.
    page.chart(
        "Memory over time",
        [
            html.Series("traced", [(0, 1000), (1, 5000)], kind="total", floor=True),
            html.Series("RSS", [(0, 9000), (1, 20000)], kind="rss"),
            html.Series("app.py:12", [(0, 0), (1, 4000)]),
        ],
        x_kind="time",
    )

    # A flame graph (icicle, root at the top) from (frames, bytes, count)
    # records; frames are (filename, lineno), the most recent call first
    # (as `pyleakhunt.Snapshot` and `pyleakhunt.export.StackSample` hold them).
    page.flame_graph(
        "Live memory",
        [((("app.py", 12), ("app.py", 30)), 4000, 10)],
    )
    # ... or from a snapshot or a growth profile:
    page.flame_graph("Growth", html.records_of(export.growth(old, new)))

    # A suspects table: rows from `pyleakhunt.growth.Suspect` objects, each
    # with the sizes of its call site at each sample for the sparkline.
    page.suspects("Leak suspects", html.suspect_rows(suspects, sparklines),
                  empty="No call site kept growing over 12 samples (3.2 min).")

    page.notes("About these figures", ["exact: every allocation was traced"])
    text = page.render()        # str: one HTML document

`Page.render` is pure: it reads source lines (`linecache`) and names frames
(`pyleakhunt.export.names`), but draws nothing itself and needs no browser.
Large inputs are cut to what can be drawn, and the page says so: a flame
graph keeps the largest call sites that hold at least `FLAME_COVERAGE` of
the bytes (at most `FLAME_MAX_SITES`) and groups the rest as "other"; a
series longer than `MAX_POINTS` keeps each bucket's lowest and highest
point, so that a sawtooth still reaches its floor.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html as _html
import json
import linecache
import operator
import os
import sysconfig
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .._raw import RawFrames
from ..units import format_size
from ..userframe import is_user_file, user_raw_frame
from .names import FrameNamer, short_filename

__all__ = [
    "FLAME_COVERAGE",
    "FLAME_MAX_SITES",
    "MAX_POINTS",
    "Page",
    "Series",
    "SuspectRow",
    "csp",
    "describe_floor",
    "floor_of",
    "frame_category",
    "json_for_script",
    "records_of",
    "reduce_points",
    "suspect_rows",
]

#: A flame graph keeps the largest call sites until they hold this share of
#: the bytes; the rest are grouped as one "other" frame.
FLAME_COVERAGE = 0.99
#: ... and never more call sites than this, whatever their share: a bound
#: on the page's size when very many sites are all small (the page draws
#: only the frames at least a pixel wide, whatever it holds).
FLAME_MAX_SITES = 20_000
#: A series keeps at most this many points (min and max of each bucket).
MAX_POINTS = 1000
#: Source lines are cut to this many characters.
SOURCE_WIDTH = 160
#: Frame kinds, as the page colours them.
CATEGORIES = ("user", "stdlib", "package", "native", "other")

#: (frames, bytes, count): one call site of a flame graph.
Record = Tuple[RawFrames, int, int]

#: pyleakhunt's own directory: its frames are drawn as a package's.
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------
# Safe embedding


def json_for_script(value: Any) -> str:
    """*value* as JSON that can sit inside a ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as ``\\u003c``... so that no string
    can close the element (``</script>``) or open a comment (``<!--``);
    U+2028 and U+2029 are escaped too (JavaScript once took them as line
    ends).  ``JSON.parse`` reads the text back unchanged.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-%s'" % base64.b64encode(digest).decode("ascii")


def csp(scripts: Sequence[str], styles: Sequence[str]) -> str:
    """The page's Content-Security-Policy: nothing from the network.

    Only the inline *scripts* and *styles* given (by their hash) may run;
    images may be ``data:`` URLs only; no fetch, form, frame or base URL.
    """
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(_sha256(s) for s in scripts),
            "style-src " + " ".join(_sha256(s) for s in styles),
            "img-src data:",
            "connect-src 'none'",
            "font-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Frames


def frame_category(filename: str) -> str:
    """``"user"``, ``"stdlib"``, ``"package"`` (installed, or pyleakhunt
    itself) or ``"native"`` (``<unknown>``: no Python frame).

    What is the user's is decided by `pyleakhunt.userframe`, the rule every
    output shares.
    """
    if filename == "<unknown>":
        return "native"
    if is_user_file(filename):
        return "user"
    path = filename.replace("\\", "/")
    if "/site-packages/" in path or "/dist-packages/" in path:
        return "package"
    if path.startswith(_package_prefixes()):
        return "package"
    return "stdlib"


@functools.lru_cache(maxsize=1)
def _package_prefixes() -> Tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {paths.get("purelib"), paths.get("platlib"), _OWN_DIR}
    return tuple(p.rstrip("/") + "/" for p in found if p)


class _Frames:
    """The frames a page shows, each stored once, and their files.

    ``files``: ``[filename, category]``; ``table``: ``[file index, line,
    function, source line]``.  Sections refer to frames by index.
    """

    def __init__(self, sources: bool = True) -> None:
        #: False: source lines are left out (empty strings).
        self.sources = sources
        self.files: List[List[str]] = []
        self.table: List[List[Any]] = []
        self._index: Dict[Tuple[str, int], int] = {}
        self._file_index: Dict[str, int] = {}
        #: filename -> whether its source can be read (checked once a file).
        self._has_source: Dict[str, bool] = {}
        self._prefixes: Dict[str, str] = {}
        self._namer = FrameNamer()

    def add(self, filename: str, lineno: int) -> int:
        key = (filename, lineno)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.table)
            self.table.append(self._describe(filename, lineno))
        return index

    def _file(self, filename: str) -> int:
        index = self._file_index.get(filename)
        if index is None:
            index = self._file_index[filename] = len(self.files)
            self.files.append([filename, frame_category(filename)])
            self._has_source[filename] = filename.startswith("<") or bool(
                linecache.getlines(filename)
            )
        return index

    def _describe(self, filename: str, lineno: int) -> List[Any]:
        file_index = self._file(filename)
        source = ""
        if not self._has_source[filename]:
            # What FrameNamer names a frame without source, without asking
            # the file system again for every line of a file that is gone.
            function = "%s:%d" % (self._fallback_prefix(filename), lineno)
        else:
            try:
                function = self._namer.name(filename, lineno).function
            except (OSError, ValueError, RecursionError, MemoryError):
                function = "%s:%d" % (short_filename(filename), lineno)
            if self.sources and lineno > 0 and not filename.startswith("<"):
                source = linecache.getline(filename, lineno).strip()
                if len(source) > SOURCE_WIDTH:
                    source = source[: SOURCE_WIDTH - 3] + "..."
        return [file_index, lineno, function, source]

    def _fallback_prefix(self, filename: str) -> str:
        prefix = self._prefixes.get(filename)
        if prefix is None:
            name = self._namer.name(filename, 0).function
            prefix = self._prefixes[filename] = name.rsplit(":", 1)[0]
        return prefix


# --------------------------------------------------------------------------
# Inputs


@dataclass
class Series:
    """One line of a chart: (x, y) points, y in bytes.

    *kind* picks its colour and style: ``"total"`` (traced memory),
    ``"rss"``, ``"site"`` (one call site), or any other name for the
    next colour of the palette.  With *floor*, the page also draws the
    series' floor (the lowest value it still reaches later on): flat for
    memory that returns to its level, rising for a leak.
    """

    name: str
    points: Sequence[Tuple[float, float]]
    kind: str = "site"
    floor: bool = False


@dataclass
class SuspectRow:
    """One row of a suspects table."""

    rank: int
    growth_bytes_per_s: float
    growth_bytes: int
    size: int
    count: int
    #: Fraction of intervals in which the site grew (0 to 1).
    consistency: float
    #: The whole traceback, the most recent call first.
    traceback: RawFrames
    #: The frame the row is named by (the user's own line); the most
    #: recent frame when None.
    frame: Optional[Tuple[str, int]] = None
    #: Live size of the site at each sample, for the sparkline.
    sparkline: Sequence[float] = ()
    estimated: bool = False
    #: It grew until the program ended, which freed it (`Suspect.freed_at_exit`).
    freed_at_exit: bool = False


def records_of(source: Any) -> List[Record]:
    """Flame-graph records of a `~pyleakhunt.export.StackProfile` (such as
    `~pyleakhunt.export.growth`), a `~pyleakhunt.Snapshot` (its live
    memory), or an iterable of ``(frames, bytes, count)``."""
    from .stacks import as_profile

    samples = getattr(source, "samples", None)
    if samples is None and hasattr(source, "raw"):
        samples = as_profile(source).samples
    if samples is not None:
        return [(s.frames, s.size, s.count) for s in samples]
    return [(tuple(frames), int(size), int(count)) for frames, size, count in source]


def suspect_rows(
    suspects: Sequence[Any],
    sparklines: Optional[Dict[Any, Sequence[float]]] = None,
    user_frame: Optional[Callable[[RawFrames], Tuple[str, int]]] = user_raw_frame,
) -> List[SuspectRow]:
    """Rows for `Page.suspects` from `pyleakhunt.growth.Suspect` objects.

    *sparklines* maps a suspect's ``key`` to its sizes over time.
    *user_frame* is called with the traceback's frames (most recent first)
    and returns the ``(filename, lineno)`` to name the row by: by default
    the user's own line (`pyleakhunt.userframe`); None names each row by
    its grouping key (the most recent frame).
    """
    rows = []
    for rank, suspect in enumerate(suspects, 1):
        frames = suspect.traceback.raw_frames
        frame = None
        if user_frame is not None:
            frame = user_frame(frames)
        if frame is None:
            frame = (suspect.filename, suspect.lineno)
        rows.append(
            SuspectRow(
                rank=rank,
                growth_bytes_per_s=suspect.growth_bytes_per_s,
                growth_bytes=suspect.growth_bytes,
                size=suspect.size,
                count=suspect.count,
                consistency=suspect.consistency,
                traceback=frames,
                frame=frame,
                sparkline=list((sparklines or {}).get(suspect.key, ())),
                estimated=suspect.estimated,
                freed_at_exit=suspect.freed_at_exit,
            )
        )
    return rows


# --------------------------------------------------------------------------
# Reductions


def reduce_points(
    points: Sequence[Tuple[float, float]], limit: int = MAX_POINTS
) -> List[Tuple[float, float]]:
    """At most about *limit* points of a series, its shape kept.

    The series is cut into buckets; each keeps its lowest and its highest
    point, in time order, so that peaks and the floors between them survive.
    """
    if len(points) <= limit:
        return list(points)
    buckets = max(1, limit // 2)
    step = len(points) / buckets
    kept: List[Tuple[float, float]] = []
    for b in range(buckets):
        chunk = points[int(b * step) : int((b + 1) * step)]
        if not chunk:
            continue
        low = min(range(len(chunk)), key=lambda i: chunk[i][1])
        high = max(range(len(chunk)), key=lambda i: chunk[i][1])
        for i in sorted({low, high}):
            kept.append(chunk[i])
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


def floor_of(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """The floor of a series: at each point, the lowest value it still
    reaches later on.  Memory that returns to its level has a flat floor;
    a leak's floor rises."""
    out: List[Tuple[float, float]] = []
    low = float("inf")
    for x, y in reversed(points):
        low = min(low, y)
        out.append((x, low))
    out.reverse()
    return out


def describe_floor(series: Series, x_kind: str = "time") -> str:
    """One sentence on whether *series*' floor rose (a leak) or stayed.

    The floor after the first fifth of the series (start-up: imports,
    caches warming) is compared with the lowest point of its last fifth, so
    that a sawtooth which keeps returning to its level reads as flat,
    however high its peaks.
    """
    points = sorted(series.points)
    if len(points) < 2:
        return "%s: too few points to tell a trend." % series.name
    fifth = len(points) // 5
    start_x, start = floor_of(points)[fifth]
    end = min(y for _, y in points[-max(1, fifth) :])
    peak = max(y for _, y in points)
    span = points[-1][0] - start_x
    rise = end - start
    after = " after its first fifth" if fifth else ""
    if rise > 0.05 * max(peak, 1):
        per = ""
        if x_kind == "time" and span > 0:
            per = ", %s a minute" % format_size(rise / span * 60)
        return (
            "%s: its floor rose%s by %s (from %s to %s%s): memory that stays, "
            "as a leak does."
            % (
                series.name,
                after,
                format_size(rise),
                format_size(start),
                format_size(end),
                per,
            )
        )
    return (
        "%s: it returns to its floor (%s; peak %s): memory that is freed "
        "again, not a leak." % (series.name, format_size(end), format_size(peak))
    )


@dataclass
class _FlameCut:
    """What a flame graph kept of its records."""

    records: List[Record]
    other_sites: int = 0
    other_bytes: int = 0
    other_count: int = 0
    total_sites: int = 0
    total_bytes: int = 0


def _cut_records(
    records: Sequence[Record], coverage: float, max_sites: int
) -> _FlameCut:
    """The largest records that hold *coverage* of the bytes (at most
    *max_sites* of them); the others summed."""
    positive = [r for r in records if r[1] > 0]
    positive.sort(key=lambda r: r[1], reverse=True)
    total = sum(r[1] for r in positive)
    cut = _FlameCut([], total_sites=len(positive), total_bytes=total)
    held = 0
    for i, record in enumerate(positive):
        if held >= coverage * total or i >= max_sites:
            rest = positive[i:]
            cut.other_sites = len(rest)
            cut.other_bytes = sum(r[1] for r in rest)
            cut.other_count = sum(r[2] for r in rest)
            break
        cut.records.append(record)
        held += record[1]
    return cut


def _flame_tree(cut: _FlameCut, frames: _Frames) -> List[Any]:
    """The icicle as nested lists ``[frame, bytes, count, children]``.

    The root's frame is -1; the "other" node's frame is -2.  Children are
    sorted by bytes, the largest first.
    """
    # While it is built, a node's children are a dict keyed by the frame
    # itself: the frame table (`_Frames.add`) is asked only when a node is
    # made, which is also the first time a frame is met, so frames are
    # numbered in the order of the records all the same.
    root: List[Any] = [-1, 0, 0, {}]
    add = frames.add
    for stack, size, count in cut.records:
        try:
            hash(stack)
        except TypeError:  # frames given as lists
            stack = tuple((filename, lineno) for filename, lineno in stack)
        node = root
        node[1] += size
        node[2] += count
        for frame in reversed(stack):  # the outermost call first
            child = node[3].get(frame)
            if child is None:
                child = node[3][frame] = [add(frame[0], frame[1]), 0, 0, {}]
            child[1] += size
            child[2] += count
            node = child
    if cut.other_sites:
        root[1] += cut.other_bytes
        root[2] += cut.other_count
        root[3][-2] = [-2, cut.other_bytes, cut.other_count, {}]
    # Each node's children become a list, the largest first (a stable
    # sort: equal ones stay in the order they were met).
    pending = [root]
    while pending:
        node = pending.pop()
        children = list(node[3].values())
        if len(children) > 1:
            children.sort(key=_BYTES, reverse=True)
        node[3] = children
        pending += children
    return root


_BYTES = operator.itemgetter(1)


# --------------------------------------------------------------------------
# The page


def _number(value: float) -> Union[int, float]:
    """A float trimmed for JSON: integers stay integers, others 4 digits."""
    if isinstance(value, int) or float(value).is_integer():
        return int(value)
    return float("%.6g" % value)


@dataclass
class Page:
    """An HTML page of sections, rendered by `render` (see the module doc)."""

    title: str
    #: Lines under the title (what was read, when, which process).
    subtitle: Sequence[str] = ()
    sections: List[Dict[str, Any]] = field(default_factory=list)
    #: False leaves source lines out of the page (a page served over HTTP
    #: may not want to show the program's code); frames keep their names.
    sources: bool = True

    def __post_init__(self) -> None:
        self._frames = _Frames(self.sources)

    def chart(
        self,
        title: str,
        series: Sequence[Series],
        x_kind: str = "time",
        x_label: str = "",
        notes: Sequence[str] = (),
    ) -> None:
        """A line chart of *series* (y in bytes).

        *x_kind* ``"time"``: x is seconds (axis in s, min or h); ``"count"``:
        x is a plain number such as requests served, named by *x_label*.
        """
        if x_kind not in ("time", "count"):
            raise ValueError("x_kind must be 'time' or 'count', not %r" % x_kind)
        data = []
        notes = list(notes)
        for one in series:
            if one.floor:
                notes.append(describe_floor(one, x_kind))
            points = reduce_points(sorted(one.points))
            data.append(
                {
                    "name": one.name,
                    "kind": one.kind,
                    "floor": one.floor,
                    "points": [[_number(x), _number(y)] for x, y in points],
                    "reduced": len(points) < len(one.points),
                }
            )
        self.sections.append(
            {
                "type": "chart",
                "title": title,
                "x_kind": x_kind,
                "x_label": x_label,
                "series": data,
                "notes": list(notes),
            }
        )

    def flame_graph(
        self,
        title: str,
        records: Iterable[Record],
        notes: Sequence[str] = (),
        coverage: float = FLAME_COVERAGE,
        max_sites: int = FLAME_MAX_SITES,
        empty: str = "No memory to show.",
    ) -> None:
        """An icicle of *records* ``(frames, bytes, count)``, frames most
        recent first.  Records with no bytes are left out; beyond
        *coverage* of the bytes or *max_sites* sites, the smallest call
        sites become one "other" frame, and a note says so."""
        cut = _cut_records(list(records), coverage, max_sites)
        tree = _flame_tree(cut, self._frames)
        notes = list(notes)
        if cut.other_sites:
            notes.append(
                "The %d largest of %d call sites are drawn: they hold %.1f%% of "
                'the bytes. The %d smallest (%.1f%%) are grouped as "other".'
                % (
                    len(cut.records),
                    cut.total_sites,
                    100 * (cut.total_bytes - cut.other_bytes) / cut.total_bytes,
                    cut.other_sites,
                    100 * cut.other_bytes / cut.total_bytes,
                )
            )
        self.sections.append(
            {
                "type": "flame",
                "title": title,
                "tree": tree,
                "sites": cut.total_sites,
                "notes": notes,
                "empty": empty,
            }
        )

    def suspects(
        self,
        title: str,
        rows: Sequence[SuspectRow],
        empty: str = "No suspect.",
        notes: Sequence[str] = (),
    ) -> None:
        """A table of suspects, the first the most likely; *empty* is said
        plainly when there is none."""
        data = []
        for row in rows:
            frame = row.frame or (row.traceback[0] if row.traceback else ("?", 0))
            data.append(
                {
                    "rank": row.rank,
                    "rate": _number(row.growth_bytes_per_s),
                    "growth": row.growth_bytes,
                    "size": row.size,
                    "count": row.count,
                    "steadiness": _number(row.consistency),
                    "frame": self._frames.add(frame[0], frame[1]),
                    "traceback": [
                        self._frames.add(f, n) for f, n in reversed(row.traceback)
                    ],
                    "spark": [_number(v) for v in row.sparkline],
                    "estimated": row.estimated,
                    "freed": row.freed_at_exit,
                }
            )
        self.sections.append(
            {
                "type": "suspects",
                "title": title,
                "rows": data,
                "empty": empty,
                "notes": list(notes),
            }
        )

    def notes(self, title: str, lines: Sequence[str]) -> None:
        """A section of plain text lines."""
        self.sections.append({"type": "notes", "title": title, "notes": list(lines)})

    def data(self) -> Dict[str, Any]:
        """What the page's script draws (the JSON embedded in the page)."""
        return {
            "title": self.title,
            "subtitle": list(self.subtitle),
            "files": self._frames.files,
            "frames": self._frames.table,
            "sections": self.sections,
        }

    def render(self) -> str:
        """The page: one self-contained HTML document."""
        style = _asset("html.css")
        script = _asset("html.js")
        policy = csp([script], [style])
        return "".join(
            [
                '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
                '<meta http-equiv="Content-Security-Policy" content="%s">\n'
                # Readable quotes: the policy holds no '"' (base64 hashes).
                % _html.escape(policy, quote=False),
                '<meta name="viewport" '
                'content="width=device-width, initial-scale=1">\n',
                '<meta name="generator" content="pyleakhunt">\n',
                "<title>%s</title>\n" % _html.escape(self.title),
                "<style>%s</style>\n</head>\n<body>\n" % style,
                "<header><h1>%s</h1></header>\n" % _html.escape(self.title),
                '<main id="plh-main"><noscript>This report draws its charts '
                "with JavaScript: allow scripts for this file.</noscript></main>\n",
                '<script type="application/json" id="plh-data">%s</script>\n'
                % json_for_script(self.data()),
                "<script>%s</script>\n</body>\n</html>\n" % script,
            ]
        )


def write_page(page: Page, path: Union[str, os.PathLike]) -> None:
    """Render *page* to the file *path* (UTF-8)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.render())
