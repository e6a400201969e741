"""The evening report's charts, drawn by matplotlib as SVG text to inline in the page.

Pure functions of plain values (instants as UTC epoch nanoseconds, shown in the trading
day's zone). Made to read in black-and-white print: kinds differ by hatching, grey level
and marker shape, never by colour alone. Figures are :class:`matplotlib.figure.Figure`
objects rendered by the SVG backend directly (no pyplot: no global figure state, safe in
a worker thread), with text kept as text (small files, searchable in the page) and ids
salted with a constant (the same data draws the same SVG).

Elements a reader (or a test) looks for carry ids (``gid``) on the timeline, one group
per lane and kind: ``{key}-recorded``, ``{key}-outage``, ``{key}-stopped``,
``{key}-silences`` and ``{key}-seqgaps``, where ``key`` is the lane's key (after an
``id_prefix``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

import matplotlib
import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator

from .activity import MINUTE_NS, Lane

#: What matplotlib's SVG output needs to be inlined: text as text, deterministic ids.
_STYLE: Final[Any] = {  # rcParams (typed as a closed set of literal keys)
    "svg.fonttype": "none",
    "text.parse_math": False,  # labels come from frame data: "$" is a dollar, not math
    "svg.hashsalt": "studio-recorder",
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_WIDTH_IN: Final = 9.5
#: The fill of recorded time (and of the busiest message type): what a screenshot shows most.
RECORDED_COLOUR: Final = "#3b5b92"
#: Fill and hatching of each kind of stretch on the timeline (readable without colour).
_RECORDED: Final[dict[str, Any]] = {"facecolor": RECORDED_COLOUR, "edgecolor": RECORDED_COLOUR}
_OUTAGE: Final[dict[str, Any]] = {
    "facecolor": "white",
    "edgecolor": "#b2182b",
    "hatch": "xx",
    "linewidth": 0.8,
}
_STOPPED: Final[dict[str, Any]] = {
    "facecolor": "white",
    "edgecolor": "#777777",
    "hatch": "//",
    "linewidth": 0.5,
}
_SILENCE: Final[dict[str, Any]] = {
    "facecolor": "#f2d16b",
    "edgecolor": "black",
    "hatch": "||",
    "linewidth": 0.5,
}
_HOURS: Final[dict[str, Any]] = {"facecolor": "#e6e6e6", "edgecolor": "none"}
_MAX_BINS: Final = 180
#: Sequence gaps labelled with their sequences, per lane (the rest are marked only).
_LABELS: Final = 10
_MAX_LAYERS: Final = 5
#: Frames per minute, by type: fills and hatchings that stay apart in grey print.
_GREYS: Final = (RECORDED_COLOUR, "#d9d9d9", "#8c8c8c", "#ffffff", "#5a5a5a", "#b8c9e6", "#f0f0f0")
_HATCHES: Final = ("", "", "//", "--", "", "\\\\", "||", "x")


def svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), scaled by CSS."""
    out = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        FigureCanvasSVG(fig).print_svg(out, metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _axes(height_in: float, *, left_in: float = 0.75, right_in: float = 0.2,
          top_in: float = 0.15, bottom_in: float = 0.5) -> tuple[Figure, Any]:  # fmt: skip
    """A figure of one axes with fixed margins (inches): a layout engine costs more than
    the drawing, and every chart of a kind has the same shape. Limits are set by the
    caller, so autoscaling (costly with many artists) is off."""
    fig = Figure(figsize=(_WIDTH_IN, height_in))
    fig.subplots_adjust(
        left=left_in / _WIDTH_IN,
        right=1 - right_in / _WIDTH_IN,
        bottom=bottom_in / height_in,
        top=1 - top_in / height_in,
    )
    ax = fig.add_subplot()
    ax.set_autoscale_on(False)
    return fig, ax


def _x(instants_ns: Sequence[int] | np.ndarray) -> Any:
    """Instants as matplotlib's date numbers."""
    return mdates.date2num(np.asarray(instants_ns, dtype="datetime64[ns]"))


def _marker(shape: str, label: str, **style: Any) -> Line2D:
    """A legend entry for a marker drawn on the chart."""
    style.setdefault("color", "black")
    return Line2D([], [], linestyle="none", marker=shape, label=label, **style)


def _time_axis(ax: Any, span_ns: tuple[int, int], tz: ZoneInfo) -> None:
    ax.set_xlim(*_x(span_ns))
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.set_xlabel(f"time of day ({tz.key})")


def _bars(intervals: Sequence[tuple[int, int]]) -> list[tuple[float, float]]:
    starts = _x([a for a, _ in intervals])
    ends = _x([b for _, b in intervals])
    return list(zip(starts, ends - starts, strict=True))


def timeline(
    lanes: Sequence[Lane],
    span_ns: tuple[int, int],
    tz: ZoneInfo,
    hours_ns: tuple[int, int] | None,
    *,
    id_prefix: str = "",
) -> str:
    """One row per account over ``span_ns``: recorded stretches, outages, stopped time,
    silences, reconnects, refused subscribes and sequence gaps; the required hours shaded.
    ``id_prefix`` keeps the element ids of two timelines of one page apart."""
    with matplotlib.rc_context(_STYLE):
        widest = max((len(lane.label) for lane in lanes), default=1)
        fig, ax = _axes(1.15 + 0.3 * len(lanes), left_in=0.25 + 0.075 * widest, top_in=0.5)
        if hours_ns is not None:
            ax.axvspan(*_x(hours_ns), zorder=0, **_HOURS)
        for row, lane in enumerate(reversed(lanes)):
            band = (row - 0.32, 0.64)
            for gid, intervals, style in (
                ("recorded", lane.recorded, _RECORDED),
                ("outage", lane.outages, _OUTAGE),
                ("stopped", lane.stopped, _STOPPED),
            ):
                if intervals:
                    bars = ax.broken_barh(_bars(intervals), band, zorder=2, **style)
                    bars.set_gid(f"{id_prefix}{lane.key}-{gid}")
            if lane.silences:
                quiet = ax.broken_barh(_bars(lane.silences), (row - 0.16, 0.32), zorder=3,
                                       **_SILENCE)  # fmt: skip
                quiet.set_gid(f"{id_prefix}{lane.key}-silences")
            if lane.reconnects:
                ax.plot(_x(lane.reconnects), [row] * len(lane.reconnects), linestyle="none",
                        marker="|", markersize=13, color="black", zorder=4)  # fmt: skip
            if lane.rejected:
                ax.plot(_x(lane.rejected), [row + 0.42] * len(lane.rejected), linestyle="none",
                        marker="x", markersize=5, color="black", zorder=4)  # fmt: skip
            if lane.sequence_gaps:
                at = _x([at for at, _ in lane.sequence_gaps])
                (marks,) = ax.plot(at, [row + 0.45] * len(at), linestyle="none", marker="v",
                                   markersize=7, color="#b2182b", markeredgecolor="black",
                                   zorder=5)  # fmt: skip
                marks.set_gid(f"{id_prefix}{lane.key}-seqgaps")
                for x, (_, label) in list(zip(at, lane.sequence_gaps, strict=True))[:_LABELS]:
                    ax.annotate(f"seq {label}", (x, row + 0.45), xytext=(4, 2),
                                textcoords="offset points", fontsize=7)  # fmt: skip
        ax.set_yticks(range(len(lanes)), [lane.label for lane in reversed(lanes)])
        ax.set_ylim(-0.7, len(lanes) - 0.1)
        _time_axis(ax, span_ns, tz)
        fig.legend(
            handles=[
                Patch(**_HOURS, label="required hours"),
                Patch(**_RECORDED, label="recorded"),
                Patch(**_OUTAGE, label="outage (not recorded)"),
                Patch(**_STOPPED, label="not running"),
                Patch(**_SILENCE, label="silence"),
                _marker("|", "reconnect", markersize=9),
                _marker("x", "subscribe refused", markersize=5),
                _marker("v", "sequence gap", color="#b2182b", markeredgecolor="black"),
            ],
            loc="upper center",
            ncols=4,
            frameon=False,
            fontsize=7.5,
        )
        return svg(fig)


def frames_per_minute(
    per_type: dict[str, dict[int, int]], span_ns: tuple[int, int], tz: ZoneInfo
) -> str:
    """Frames received per minute over ``span_ns``, stacked by message type (the busiest at
    the bottom; past the fifth, the rest as "other"), each its own grey and hatching.

    At most :data:`_MAX_BINS` steps: over a long span a step is several minutes, and shows
    their average per minute. Each layer is one polygon (its top edge and two corners), so
    a day of 50 accounts stays a page of a few megabytes.
    """
    first = span_ns[0] // MINUTE_NS * MINUTE_NS
    minutes = -(-(span_ns[1] - first) // MINUTE_NS)
    step = max(1, -(-minutes // _MAX_BINS))  # minutes per bin
    bins = -(-minutes // step)
    layers = _layers(per_type)
    stacks = np.zeros((len(layers), bins))
    for k, (_, counts) in enumerate(layers):
        for minute, n in counts.items():
            i = (minute - first) // (MINUTE_NS * step)
            if 0 <= i < bins:
                stacks[k, i] += n / step
    edges = _x(first + np.arange(bins + 1, dtype=np.int64) * MINUTE_NS * step)
    with matplotlib.rc_context(_STYLE):
        fig, ax = _axes(2.3, right_in=2.6, left_in=0.8)
        tops = np.cumsum(stacks, axis=0)
        for k in reversed(range(len(layers))):  # the lower layers paint over the upper
            xs = np.concatenate([np.repeat(edges, 2)[1:-1], [edges[-1], edges[0]]])
            ys = np.concatenate([np.repeat(tops[k], 2), [0, 0]])
            ax.fill(xs, ys, facecolor=_GREYS[k % len(_GREYS)], hatch=_HATCHES[k % len(_HATCHES)],
                    edgecolor="black", linewidth=0.3, label=layers[k][0])  # fmt: skip
        if layers:
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(handles[::-1], labels[::-1], loc="upper right", frameon=False,
                       fontsize=7)  # fmt: skip
        else:
            ax.text(0.5, 0.5, "no frames", transform=ax.transAxes, ha="center")
        ax.set_ylim(bottom=0)
        ax.set_ylabel(
            "frames per minute" if step == 1 else f"frames per minute\n({step}-minute mean)"
        )
        _time_axis(ax, span_ns, tz)
        return svg(fig)


def _layers(per_type: dict[str, dict[int, int]]) -> list[tuple[str, dict[int, int]]]:
    """(label, counts by minute) of the stacked layers: the busiest types, then "other"."""
    ordered = sorted(per_type.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    shown = ordered if len(ordered) <= _MAX_LAYERS + 1 else ordered[:_MAX_LAYERS]
    # "\u00a0": matplotlib leaves a label starting with "_" out of the legend
    layers = [(f"\u00a0{t} ({sum(c.values()):,})", c) for t, c in shown]
    if len(shown) < len(ordered):
        rest: dict[int, int] = {}
        for _, counts in ordered[_MAX_LAYERS:]:
            for minute, n in counts.items():
                rest[minute] = rest.get(minute, 0) + n
        names = ", ".join(t for t, _ in ordered[_MAX_LAYERS:])
        layers.append((f"\u00a0other: {names} ({sum(rest.values()):,})", rest))
    return layers


def latency(
    bins: Sequence[tuple[float, float, int]], p50_ms: float | None, p99_ms: float | None
) -> str:
    """The distribution of receipt latency (ms, log scale) with p50 and p99 marked."""
    with matplotlib.rc_context(_STYLE):
        fig, ax = _axes(2.1, left_in=0.8)
        if bins:
            lows = [b[0] for b in bins]
            widths = [b[1] - b[0] for b in bins]
            ax.bar(lows, [b[2] for b in bins], width=widths, align="edge", color="#9db3d6",
                   edgecolor="black", linewidth=0.5)  # fmt: skip
            ax.set_xscale("log")
            # whole decades around the data, labelled as plain numbers
            ax.set_xlim(10 ** math.floor(math.log10(bins[0][0])),
                        10 ** math.ceil(math.log10(bins[-1][1])))  # fmt: skip
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())  # minor ticks cost more than the bars
            for row, (value, name, style) in enumerate(
                ((p50_ms, "p50", "--"), (p99_ms, "p99", ":"))
            ):
                if value is not None and value > 0:
                    ax.axvline(value, color="black", linestyle=style, linewidth=1.2)
                    ax.annotate(f"{name} {value:,.3g} ms", (value, 1),
                                xycoords=("data", "axes fraction"), xytext=(3, -10 - 11 * row),
                                textcoords="offset points", fontsize=7.5)  # fmt: skip
        else:
            ax.text(0.5, 0.5, "no live frames with a server timestamp", transform=ax.transAxes,
                    ha="center")  # fmt: skip
        ax.set_xlabel("receipt time − server time (ms)")
        ax.set_ylabel("frames")
        return svg(fig)
