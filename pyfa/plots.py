"""PNG plots of training histories: loss/accuracy curves, alignment metrics, comparisons of runs.

Drawn with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``): no pyplot,
no global backend switch, no window; safe in scripts, tests and headless machines. Every function
returns the ``Figure`` and writes a PNG if given a path, atomically (a temporary file renamed over
the target, `pyfa.checkpoint.atomic_write`).

Sized for a page: every figure is `WIDTH` (7.5 in) wide, saved at `DPI` (200) with 9 pt text, so
that shown at a documentation column's width (about 740 px, half its size) its text is about 12 px
high, and all figures shown side by side are scaled alike. Legends sit below the axes, never on a
curve: colour = layer in one run's alignment figure; colour = run (mode) in a comparison, with line
style = train/test for the loss and accuracy curves.

No plot comes out empty: curves start at epoch 0 (the measurements before training), so a run
stopped in its first epoch still shows where it started, and a panel with nothing finite to draw
says why: "not defined for dfa" (a series the run recorded as undefined, e.g. DFA's W–B angle in a
convolutional network), "not recorded" (a history from before the metric existed) or "nothing
finite to plot" (a diverged run). A panel missing only some of its series names them under its
title; a comparison names a run with nothing to draw in any panel of a metric in its legend entry
(or, stacked, in the metric's heading).

The alignment metrics (`METRICS`, from `pyfa.metrics`, per layer): the W–B angle, the angle between
the mode's update and backprop's on the same batch, and ‖B‖/‖W‖ (for DFA's hidden layers: against
the forward path W_L ⋯ W_{l+1}; none for its top layer). A comparison draws each metric as one row
of layer panels (wrapped to two rows beyond three layers): `plot_compare_metric` one metric per
figure, `plot_compare_alignment` the three stacked in one.

``title=False`` (and ``caption=False``) leave the run's settings and the explanatory caption out of
the image, for a page that says them under the figure. From the command line::

    python -m pyfa.plots runs/digits/histories.json --out docs/results --prefix digits_ --per-metric --bare
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import textwrap
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from pyfa.checkpoint import atomic_write

#: Width of every figure (inches) and resolution of the PNGs (dots per inch).
WIDTH = 7.5
DPI = 200
_FONT = 9.0  # points: 25 px at 200 dpi, about 12 px shown at half size
_STYLE = {
    "font.size": _FONT, "axes.titlesize": _FONT + 0.5, "axes.labelsize": _FONT,
    "xtick.labelsize": _FONT - 0.5, "ytick.labelsize": _FONT - 0.5, "legend.fontsize": _FONT,
    "figure.titlesize": _FONT + 1, "lines.linewidth": 1.3, "axes.titlepad": 4.0,
    "legend.handlelength": 2.0, "legend.columnspacing": 1.4, "legend.borderaxespad": 0.2,
    "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
}
_PANEL_HEIGHT = 2.2  # inches per row of panels

#: The alignment metrics, by short name (as in the file names): (History attribute, name, y label).
METRICS = {
    "wb_angle": ("weight_feedback_angle", "W–B angle", "W–B angle (°)"),
    "update_angle": ("update_angle", "Update angle (vs backprop)", "update angle (°)"),
    "norm_ratio": ("feedback_norm_ratio", "‖B‖ / ‖W‖", "‖B‖ / ‖W‖"),
}
_MODE_COLORS = {"fa": "tab:blue", "bp": "tab:orange", "usf": "tab:green", "brsf": "tab:red",
                "frsf": "tab:purple", "kp": "tab:brown", "dfa": "tab:pink"}
_LOSS_NAMES = {"mse": "MSE", "ce": "cross-entropy"}
_LAYER_STYLES = ["-", "--", ":", "-."]
_LAYER_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
_NINETY = "90° (unaligned)"
_ALIGNED = "  (below\u00a090°\u00a0=\u00a0aligned)"  # no-break spaces: one piece when wrapped


def _styled(draw):
    """Run `draw` under the page style (font sizes, line widths): the figure is made and saved
    inside it, so the PNG does not depend on the caller's rcParams."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_STYLE):
            return draw(*args, **kwargs)
    return wrapper


@_styled
def plot_curves(history, path: str | os.PathLike | None = None, *, note: str | None = None,
                title: bool = True) -> Figure:
    """Loss (train, test) and, for classification, accuracy (train, test) against the epoch; the
    test curves start at epoch 0, before training. `note` (e.g. why training stopped) is a line
    under the title; ``title=False`` leaves out the run's settings."""
    classification = bool(history.test_acc) or "test_acc" in history.initial
    fig, body, grid = _figure()
    axes = list(body.subplots(1, 2 if classification else 1, squeeze=False)[0])
    epochs = list(range(1, history.epochs + 1))
    test_xs, test_loss = _with_initial(history, "test_loss")
    ms = _ms(history.epochs)
    ax = axes[0]
    train_line = ax.plot(epochs, history.loss, "-o", ms=ms, color="tab:blue",
                         label="train (loss: mean over the epoch)")[0]
    test_line = ax.plot(test_xs, test_loss, "-s", ms=ms, color="tab:orange",
                        label="test (after the epoch)")[0]
    name = _loss_name(history)
    _decorate(ax, f"Loss ({name})", f"{name} loss", log=_wide_range(history.loss + test_loss),
              epoch0=True)
    _note_if_empty(ax, history.loss + test_loss)
    if classification:
        ax = axes[1]
        xs, train_acc = _with_initial(history, "train_acc")
        ax.plot(xs, [100 * a for a in train_acc], "-o", ms=ms, color="tab:blue")
        xs, test_acc = _with_initial(history, "test_acc")
        ax.plot(xs, [100 * a for a in test_acc], "-s", ms=ms, color="tab:orange")
        _decorate(ax, "Accuracy", "accuracy (%)", epoch0=True)
        _accuracy_limits(ax, train_acc + test_acc)
        _note_if_empty(ax, train_acc + test_acc)
    _epoch_limits(axes, history.epochs)
    return _complete(fig, grid, _PANEL_HEIGHT + 0.2, [[train_line, test_line]], path,
                     title=_title(history) if title else None, note=note)


@_styled
def plot_alignment(history, path: str | os.PathLike | None = None, *, note: str | None = None,
                   title: bool = True, caption: bool = True) -> Figure:
    """Per layer (colour), from epoch 0: the W–B angle, the update-vs-backprop angle and ‖B‖/‖W‖,
    one panel each; `note` and `title` as in `plot_curves`; ``caption=False`` leaves out the
    text under the legend that says what to read in the panels (`alignment_caption`)."""
    fig, body, grid = _figure()
    axes = list(body.subplots(1, len(METRICS), squeeze=False)[0])
    names = _layer_names(history)
    handles = []
    ms = _ms(history.epochs)
    for ax, (metric, (key, name, ylabel)) in zip(axes, METRICS.items(), strict=True):
        xs, rows = _layer_rows(history, key)
        missing = []
        for i, layer in enumerate(names):
            ys = [r[i] if i < len(r) else math.nan for r in rows]
            line = ax.plot(xs, ys, _LAYER_STYLES[i % 4], color=_LAYER_COLORS[i % len(_LAYER_COLORS)],
                           marker="o", ms=ms, label=layer)[0]
            if ax is axes[0]:
                handles.append(line)
            if not _finite(ys):
                missing.append((_short(layer), _why_empty(history, key, rows)))
        _metric_panel(ax, metric, name, ylabel, [v for r in rows for v in r], missing)
    _epoch_limits(axes, history.epochs)
    return _complete(fig, grid, _PANEL_HEIGHT + 0.2, [handles, _ninety_handle("wb_angle")], path,
                     title=_title(history) + _ALIGNED if title else None, note=note,
                     caption=alignment_caption([history.mode]) if caption else None)


@_styled
def plot_compare(histories, path: str | os.PathLike | None = None, *, title: bool = True
                 ) -> Figure:
    """Several runs (e.g. modes fa and bp) overlaid: loss, and accuracy for classification.

    Colour = run (its final test accuracy in the legend); dashed = train, solid = test;
    ``title=False`` leaves out the runs' settings."""
    hs = _as_dict(histories)
    classification = all(h.test_acc for h in hs.values())
    fig, body, grid = _figure()
    axes = list(body.subplots(1, 2 if classification else 1, squeeze=False)[0])
    all_losses = []
    runs = []
    for label, h in hs.items():
        c = _MODE_COLORS.get(label, None)
        epochs = list(range(1, h.epochs + 1))
        xs, test_loss = _with_initial(h, "test_loss")
        line = axes[0].plot(epochs, h.loss, "--", color=c, lw=1.1)[0]
        c = line.get_color()
        axes[0].plot(xs, test_loss, "-", marker="o", ms=_ms(h.epochs), color=c)
        all_losses += h.loss + test_loss
        final = f" (test {100 * h.test_acc[-1]:.1f} %)" if classification and h.test_acc else ""
        runs.append(Line2D([], [], color=c, lw=2, label=f"{label}{final}"))
        if classification:
            axes[1].plot(*_with_initial(h, "train_acc", scale=100), "--", color=c, lw=1.1)
            axes[1].plot(*_with_initial(h, "test_acc", scale=100), "-", marker="o", ms=_ms(h.epochs),
                         color=c)
    name = _loss_name(next(iter(hs.values())))
    log = _wide_range(all_losses)
    _decorate(axes[0], f"Loss ({name})", f"{name} loss", log=log, epoch0=True)
    _note_if_empty(axes[0], all_losses)
    long_run = min(h.epochs for h in hs.values()) >= 5
    trained = _finite([v for h in hs.values() for v in [*h.loss, *h.test_loss]])
    initial = _finite([h.initial.get("test_loss") for h in hs.values()])
    if long_run and not log and trained and initial and min(initial) > 1.5 * max(trained):
        # epoch 0 far above the rest: zoom on the trained range, where the modes differ
        axes[0].set_ylim(0, 1.1 * max(trained))
        axes[0].set_title(f"Loss ({name})\n(epoch 0: {_span(initial, '.2f')}, above the axis)")
    if classification:
        _decorate(axes[1], "Accuracy", "accuracy (%)", epoch0=True)
        trained = [100 * a for h in hs.values() for a in [*h.test_acc, *h.train_acc]]
        initial = [100 * h.initial["test_acc"] for h in hs.values()
                   if h.initial.get("test_acc") is not None]
        if long_run and initial and trained and min(initial) < min(trained) - 20:
            # epoch 0 far below the rest: zoom likewise
            _accuracy_limits(axes[1], trained)
            axes[1].set_title(f"Accuracy\n(epoch 0: {_span(initial, '.0f')} % test, below the axis)")
        else:
            _accuracy_limits(axes[1], trained + initial)
    _epoch_limits(axes, max(h.epochs for h in hs.values()))
    styles = [Line2D([], [], color="gray", ls="--", lw=1.1, label="train (loss: mean over the epoch)"),
              Line2D([], [], color="gray", ls="-", marker="o", ms=3, label="test (after the epoch)")]
    return _complete(fig, grid, _PANEL_HEIGHT + 0.2, [runs, styles], path,
                     title=_title(next(iter(hs.values())), modes=list(hs)) if title else None)


@_styled
def plot_compare_metric(histories, metric: str, path: str | os.PathLike | None = None, *,
                        title: bool = True, caption: bool = True) -> Figure:
    """Several runs' alignment metric `metric` (a key of `METRICS`: ``"wb_angle"``,
    ``"update_angle"`` or ``"norm_ratio"``), one panel per layer (a row of up to three, two rows
    beyond), colour = run; a run with nothing to draw in any panel is marked in the legend (e.g.
    "dfa (not defined)"); `title` and `caption` as in `plot_alignment`."""
    if metric not in METRICS:
        raise ValueError(f"plot_compare_metric: unknown metric {metric!r}; expected one of "
                         f"{', '.join(METRICS)}")
    hs = _as_dict(histories)
    fig, body, grid = _figure()
    runs, absent = _metric_block(body, hs, metric)
    for handle in runs:
        if handle.get_label() in absent:
            handle.set_label(f"{handle.get_label()} ({absent[handle.get_label()]})")
    rows = _rows_of(_layer_names(next(iter(hs.values()))))
    return _complete(fig, grid, rows * _PANEL_HEIGHT, [runs, _ninety_handle(metric)], path,
                     title=f"{_title(next(iter(hs.values())), modes=list(hs))}: {METRICS[metric][1]}"
                     if title else None,
                     caption=alignment_caption([h.mode for h in hs.values()], metric) if caption else None)


@_styled
def plot_compare_alignment(histories, path: str | os.PathLike | None = None, *,
                           title: bool = True, caption: bool = True) -> Figure:
    """Several runs' three alignment metrics stacked: for each metric (W–B angle, update angle,
    ‖B‖/‖W‖) a heading and a row of layer panels as in `plot_compare_metric` (a run with nothing
    to draw for a metric is named in its heading), colour = run, one legend."""
    hs = _as_dict(histories)
    rows = _rows_of(_layer_names(next(iter(hs.values()))))
    fig, body, grid = _figure()
    runs = []
    for block, metric in zip(body.subfigures(len(METRICS), 1), METRICS, strict=True):
        runs, absent = _metric_block(block, hs, metric)
        heading = METRICS[metric][1] + ("" if metric == "norm_ratio" else _ALIGNED)
        if absent:
            heading += "; " + ", ".join(f"{run}: {why}" for run, why in absent.items())
        block.suptitle(heading, fontsize=_FONT + 0.5, fontweight="bold")
    return _complete(fig, grid, len(METRICS) * (rows * _PANEL_HEIGHT + 0.3),
                     [runs, _ninety_handle("wb_angle")], path,
                     title=_title(next(iter(hs.values())), modes=list(hs)) + _ALIGNED
                     if title else None,
                     caption=alignment_caption([h.mode for h in hs.values()]) if caption else None)


def save_plots(history, out_dir: str | os.PathLike, *, note: str | None = None) -> list[Path]:
    """``curves.png`` and ``alignment.png`` in `out_dir` (with `note` under their titles);
    returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "curves.png", out / "alignment.png"]
    plot_curves(history, paths[0], note=note)
    plot_alignment(history, paths[1], note=note)
    return paths


def save_compare_plots(histories, out_dir: str | os.PathLike, *, prefix: str = "compare_",
                       per_metric: bool = False, title: bool = True, caption: bool = True
                       ) -> list[Path]:
    """The comparison plots of `histories` in `out_dir`; returns their paths.

    ``PREFIXcurves.png`` (`plot_compare`), then either ``PREFIXalignment.png``
    (`plot_compare_alignment`, the three metrics in one figure) or, with ``per_metric=True``,
    one figure per metric: ``PREFIXwb_angle.png``, ``PREFIXupdate_angle.png`` and
    ``PREFIXnorm_ratio.png`` (`plot_compare_metric`). `title` and `caption` as in
    `plot_alignment`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hs = _as_dict(histories)
    paths = [out / f"{prefix}curves.png"]
    plot_compare(hs, paths[0], title=title)
    if per_metric:
        for metric in METRICS:
            paths.append(out / f"{prefix}{metric}.png")
            plot_compare_metric(hs, metric, paths[-1], title=title, caption=caption)
    else:
        paths.append(out / f"{prefix}alignment.png")
        plot_compare_alignment(hs, paths[-1], title=title, caption=caption)
    return paths


# ------------------------------------------------------------------------------- figure helpers


def _figure():
    """A page-wide figure of two subfigures on `grid`: the body, returned for the panels, and a
    footer for the legend and caption (`_complete`)."""
    fig = Figure(figsize=(WIDTH, 4.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    body = fig.add_subfigure(grid[0])
    fig.add_subfigure(grid[1])
    return fig, body, grid


def _complete(fig: Figure, grid, body_height: float, groups: list[list], path, *,
              title: str | None = None, note: str | None = None, caption: str | None = None
              ) -> Figure:
    """Put the title (and `note`) above the panels, the legend of `groups` and then `caption`
    below them; make the figure `body_height` inches of panels tall plus what that text
    needs (measured), so panels keep their size whatever the text; write it to `path`."""
    _suptitle(fig, title, note)
    foot = fig.subfigs[1]
    renderer = fig.canvas.get_renderer()
    legend = _legend(foot, groups, renderer)
    legend_h = legend.get_window_extent(renderer).height / fig.dpi if legend else 0.0
    text, caption_h = None, 0.0
    if caption:
        width = int(15 * fig.get_figwidth())  # characters of the small font per line
        lines = [w for line in caption.split("\n") for w in textwrap.wrap(line, width)]
        text = foot.text(0.5, 0.0, "\n".join(lines), ha="center", va="top", fontsize="small",
                         color="dimgray")
        caption_h = text.get_window_extent(renderer).height / fig.dpi + 0.1
    foot_h = legend_h + caption_h + 0.08
    title_h = (fig._suptitle.get_window_extent(renderer).height / fig.dpi + 0.1
               if fig._suptitle is not None else 0.0)
    fig.set_size_inches(WIDTH, title_h + body_height + foot_h)
    grid.set_height_ratios([body_height, foot_h])
    if text is not None:
        text.set_y(1 - (legend_h + 0.1) / foot_h)
    return _finish(fig, path)


def _legend(foot, groups: list[list], renderer):
    """One legend at the top of `foot`, centred: `groups` of handles (runs or layers, then line
    styles), each filling whole columns, in as few rows as fit the figure's width."""
    groups = [g for g in groups if g]
    if not groups:
        return None
    blank = Line2D([], [], color="none", label=" ")
    longest = max(len(g) for g in groups)
    for rows in range(1, longest + 1):
        handles = []
        for g in groups:
            handles += g + [blank] * (math.ceil(len(g) / rows) * rows - len(g))
        legend = foot.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0),
                             ncols=len(handles) // rows, frameon=False)
        if legend.get_window_extent(renderer).width <= 0.98 * foot.figure.bbox.width or (
                rows == longest):
            return legend
        legend.remove()
    return None


def _rows_of(names) -> int:
    return 1 if len(names) <= 3 else 2


def _layer_axes(container, n: int) -> list:
    """Axes for `n` layer panels in `container`: one row of up to three; beyond, two rows, the
    second centred when it has fewer panels."""
    rows = _rows_of(range(n))
    cols = max(1, math.ceil(n / rows))
    grid = container.add_gridspec(rows, 2 * cols)
    axes = []
    for i in range(max(n, 1)):
        r, c = divmod(i, cols)
        shift = cols * rows - n if r == rows - 1 else 0  # half a panel per missing one: centred
        axes.append(container.add_subplot(grid[r, 2 * c + shift:2 * c + shift + 2]))
    return axes


def _metric_block(container, hs: dict, metric: str):
    """Draw metric `metric` of every run in `hs` into `container` (a subfigure), one panel per
    layer. Returns the runs' legend handles and {run: why} for the runs with nothing to draw in
    any panel; a run missing from only some panels is named under their titles."""
    key, _, ylabel = METRICS[metric]
    names = _layer_names(next(iter(hs.values())))
    axes = _layer_axes(container, len(names))
    cols = math.ceil(len(axes) / _rows_of(names))
    runs, why = {}, {}
    series = []
    for col, ax in enumerate(axes):
        panel = []
        for label, h in hs.items():
            xs, rows = _layer_rows(h, key)
            ys = [r[col] if col < len(r) else math.nan for r in rows]
            line = ax.plot(xs, ys, "-", color=_MODE_COLORS.get(label), marker="o",
                           ms=_ms(h.epochs, 2.5))[0]
            runs.setdefault(label, Line2D([], [], color=line.get_color(), lw=2, label=label))
            panel.append((label, ys))
            if not _finite(ys):
                why.setdefault(label, _why_empty(h, key, rows))
        series.append(panel)
    absent = {label: reason for label, reason in why.items()
              if all(not _finite(ys) for panel in series for run, ys in panel if run == label)}
    for col, (ax, panel) in enumerate(zip(axes, series, strict=True)):
        missing = [(label, why[label]) for label, ys in panel
                   if not _finite(ys) and label not in absent]
        if not any(_finite(ys) for _, ys in panel):
            missing = [(label, why[label]) for label, _ in panel]
        layer = names[col] if col < len(names) else f"layer {col + 1}"
        _metric_panel(ax, metric, layer, ylabel if col % cols == 0 else None,
                      [v for _, ys in panel for v in ys], missing)
    _epoch_limits(axes, max(h.epochs for h in hs.values()))
    return list(runs.values()), {label: reason.split(" for ")[0] for label, reason in absent.items()}


def _metric_panel(ax, metric: str, title: str, ylabel: str | None, values, missing) -> None:
    """Axes, limits and reference line of a panel of `metric`; `missing` = (series, why) of the
    series with nothing finite: all of them -> the reason in the panel; some -> under the title."""
    finite = _finite(values)
    if metric == "norm_ratio":
        log = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 30
        _decorate(ax, title, ylabel or "", log=log)
        ax.axhline(1.0, color="lightgray", lw=1, zorder=1)
        if finite and not log:
            ax.set_ylim(0, max(1.1, max(finite) * 1.1))
    else:
        _decorate(ax, title, ylabel or "")
        ax.axhline(90, color="gray", ls=(0, (4, 3)), lw=1.2, label=_NINETY, zorder=1)
        top = max(100.0, (max(finite) if finite else 90.0) + 5)
        ax.set_ylim(-3, top)
        ax.set_yticks(range(0, int(top) + 1, 30))
    if not finite:
        whys = list(dict.fromkeys(why for _, why in missing)) or ["nothing finite to plot"]
        ax.text(0.5, 0.5, "\n".join(whys), transform=ax.transAxes, ha="center", va="center",
                color="dimgray")
    elif missing:
        ax.set_title(f"{title}\n(none for {', '.join(s for s, _ in missing)}: "
                     f"{missing[0][1].split(' for ')[0]})")


def _why_empty(h, key: str, rows) -> str:
    """Why series `key` of run `h` has nothing finite in a panel: the run did not record it (a
    history from before the metric existed), it diverged at once, or the rule has no such number
    (DFA's top layer, DFA's W–B angle with conv layers)."""
    if not rows or not isinstance(h.initial.get(key), list):
        return "not recorded"
    if h.loss and not _finite(h.loss):
        return "nothing finite to plot"
    return f"not defined for {h.mode}"


def _ninety_handle(metric: str) -> list:
    if metric == "norm_ratio":
        return []
    return [Line2D([], [], color="gray", ls=(0, (4, 3)), lw=1.2, label=_NINETY)]


def _finish(fig: Figure, path) -> Figure:
    """Write `fig` to `path` (if given) as a PNG of 256 colours: a third of the size of
    matplotlib's RGBA file, the same to the eye for lines and text on white."""
    if path is not None:
        from PIL import Image  # Pillow: a dependency of matplotlib

        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="png")
        no_dither = getattr(Image, "Dither", Image).NONE  # Pillow < 9.1: Image.NONE
        image = Image.open(buffer).convert("RGB").quantize(256, dither=no_dither)
        atomic_write(path, lambda f: image.save(f, format="PNG", optimize=True))
    return fig


def _decorate(ax, title: str, ylabel: str, *, log: bool = False, epoch0: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch" + (" (0 = before training)" if epoch0 else ""))
    ax.set_ylabel(ylabel)
    if log:  # ticks at 1, 2, 5 times powers of ten, written as plain numbers
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=_FONT - 0.5)  # kept by the axes: also when drawn outside _styled
    ax.xaxis.get_major_locator().set_params(integer=True)


def _suptitle(fig: Figure, title: str | None, note: str | None = None) -> None:
    """The figure's title (and `note` below it), wrapped to the figure's width so none is clipped;
    nothing without either."""
    width = int(12 * fig.get_figwidth())  # characters of the title font per line
    lines = (textwrap.wrap(title, width) if title else []) + (
        textwrap.wrap(note, width) if note else [])
    if lines:
        fig.suptitle("\n".join(lines))


# --------------------------------------------------------------------------------- data helpers


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _ms(epochs: int, size: float = 3.0) -> float:
    """Marker size: a dot per epoch for short runs; none for long ones, where dots would merge
    into a thick band."""
    return size if epochs <= 40 else 0.0


def _layer_rows(h, key: str):
    """(epochs, per-epoch rows of per-layer values) of series `key`, from epoch 0 when recorded; no
    rows (nothing drawn) for a series this history did not record."""
    rows = list(getattr(h, key, []) or [])
    if len(rows) != h.epochs:
        rows = []
    xs = list(range(1, len(rows) + 1))
    first = h.initial.get(key)
    if first is not None:
        xs, rows = [0, *xs], [first, *rows]
    return xs, [[math.nan if v is None else v for v in r] for r in rows]


def _loss_name(h) -> str:
    return _LOSS_NAMES.get(h.config.get("loss") or "mse", str(h.config.get("loss")))


def _epoch_limits(axes, epochs: int) -> None:
    """Whole epochs 0..`epochs` on the x axis, also for a run stopped before its first epoch."""
    for ax in axes:
        ax.set_xlim(-0.02 * max(epochs, 1) - 0.3, 1.02 * max(epochs, 1) + 0.3)


def _accuracy_limits(ax, percents) -> None:
    ax.set_ylim(max(-1.0, min(_finite(percents), default=0.0) - 5), 100.5)


def _with_initial(h, key: str, scale: float = 1.0):
    """(epochs, values) of a per-epoch list, from epoch 0 (``h.initial[key]``) when recorded."""
    values = [scale * v for v in getattr(h, key)]
    xs = list(range(1, len(values) + 1))
    if key in h.initial and h.initial[key] is not None:
        return [0, *xs], [scale * h.initial[key], *values]
    return xs, values


def _span(values, fmt: str) -> str:
    """``a`` or ``a–b``: the range of `values` as `fmt` writes them."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def _note_if_empty(ax, values) -> None:
    if not _finite(values):
        ax.text(0.5, 0.5, "nothing finite to plot", transform=ax.transAxes, ha="center",
                va="center", color="dimgray")


def _wide_range(values) -> bool:
    vals = [v for v in _finite(values) if v > 0]
    return bool(vals) and max(vals) / min(vals) > 30


def _layer_names(h) -> list[str]:
    sizes = h.config.get("sizes")
    n = len((h.weight_feedback_angle or [h.initial.get("weight_feedback_angle", [])])[0])
    given = h.config.get("layer_names")
    if isinstance(given, list) and len(given) == n:
        return [str(v) for v in given]
    if sizes and len(sizes) == n + 1:
        return [f"layer {i + 1} ({sizes[i]}→{sizes[i + 1]})" for i in range(n)]
    return [f"layer {i + 1}" for i in range(n)]


def _short(layer: str) -> str:
    """``layer 3`` of ``layer 3 (256→10)``, ``conv1`` of ``conv1 (1→6, 5×5)``."""
    return layer.split(" (")[0]


def _title(h, modes: list[str] | None = None) -> str:
    c = h.config
    sizes = c.get("sizes")
    arch = c.get("architecture") or (
        f"MLP {'-'.join(map(str, sizes)) if sizes else '?'} {c.get('activation', '')}")
    what = f"modes {' vs '.join(modes)}" if modes else f"mode {c.get('mode', '?')}"
    loss = f", {_LOSS_NAMES.get(c['loss'], c['loss'])}" if c.get("loss") else ""
    return (
        f"{c.get('dataset', '?')}: {what}, {c.get('backend', '?')}, {arch}{loss}, "
        f"{c.get('optimizer', '?')} lr {c.get('lr', '?')}, batch {c.get('batch_size', '?')}, "
        f"seed {c.get('seed', '?')}"
    )


def _as_dict(histories) -> dict:
    if isinstance(histories, dict):
        hs = dict(histories)
    else:
        hs = {}
        for h in histories:
            label = h.mode
            while label in hs:
                label += "'"
            hs[label] = h
    if not hs:
        raise ValueError("nothing to plot: no histories given")
    return hs


# ------------------------------------------------------------------------------------- captions

_SIGN_CONCORDANT = ("usf", "brsf", "frsf")


def alignment_caption(modes, metric: str | None = None) -> str:
    """The note under an alignment figure, for the modes it plots (and, given `metric`, a key of
    `METRICS`, for that metric alone): their W–B angles differ (near 90° for fa's layer 1, 30–45°
    by construction for usf, brsf and frsf, 0° for bp, falling in kp, against the forward path in
    dfa)."""
    modes = list(dict.fromkeys(modes))
    if modes and set(modes) <= {"bp"}:
        return (
            "bp is backprop itself: B = W, so both angles are 0° and ‖B‖/‖W‖ = 1 in every layer, by "
            "construction.\nThe 90° line is for reference: train fa (or --compare fa,bp) to see W "
            "align with B."
        )
    named = len(modes) > 1
    left = []
    if "fa" in modes or not set(modes) & {"bp", "kp", "dfa", *_SIGN_CONCORDANT}:  # fa, or none
        left.append(
            ("fa: " if named else "")
            + "layer 1's B only carries the error to the input, which nothing learns from, so its "
            "angle stays near 90°; the B of the layers above shape the hidden layers' updates and "
            "W aligns with them."
        )
    signed = [m for m in modes if m in _SIGN_CONCORDANT]
    if signed:
        left.append(
            f"{', '.join(signed)}: B takes W's signs, so W and B are aligned by construction "
            "(about 30–45°) in every layer."
        )
    if "kp" in modes:
        left.append(("kp: " if named else "") + "B learns with W's gradient (and decays with it), "
                    "so the W–B angle falls in every layer, layer 1's too.")
    if "dfa" in modes:
        left.append(("dfa: " if named else "") + "hidden layer l's B_l (outputs × h_l) is compared "
                    "with the forward path W_L···W_(l+1) (not defined with conv layers); the top "
                    "layer uses no B (nothing drawn).")
    right = (
        "Update angle: the mode's weight gradient against backprop's on the same fixed batch of "
        "training samples; the last layer gets the true gradient in every mode (0°)."
    )
    if "bp" in modes:
        right += " bp is backprop itself (B = W): 0° and a ratio of 1 everywhere."
    wb = "W–B angle and ‖B‖/‖W‖: " + "\n".join(left)
    epoch0 = "\nEpoch 0: before training."
    if metric == "update_angle":
        return right + epoch0
    if metric in ("wb_angle", "norm_ratio"):
        return wb + epoch0
    return wb + "\n" + right + epoch0


# --------------------------------------------------------------------------------- command line


def _read_runs(paths) -> dict:
    """{label: History} from ``histories.json`` files (one run per mode) and ``history.json``
    files (one run each)."""
    from pyfa.train import History

    runs = {}
    for path in paths:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        many = isinstance(d, dict) and d and all(isinstance(v, dict) and "loss" in v
                                                 for v in d.values())
        for label, item in (d.items() if many else [(None, d)]):
            h = History.from_dict(item, where=repr(str(path)))
            label = label or h.mode
            while label in runs:
                label += "'"
            runs[label] = h
    return runs


def main(argv=None) -> int:
    """``python -m pyfa.plots FILE... --out DIR``: redraw comparison plots from saved histories,
    without training."""
    p = argparse.ArgumentParser(
        prog="python -m pyfa.plots",
        description="Draw the comparison plots of saved training histories (histories.json of a "
                    "`pyfa train --compare` run, or history.json files), without training.")
    p.add_argument("files", nargs="+", help="histories.json or history.json files")
    p.add_argument("--out", required=True, help="folder to write the PNGs to")
    p.add_argument("--prefix", default="compare_", help="file name prefix (default: compare_)")
    p.add_argument("--per-metric", action="store_true",
                   help="one alignment figure per metric (PREFIXwb_angle.png, PREFIXupdate_angle.png, "
                        "PREFIXnorm_ratio.png) instead of PREFIXalignment.png")
    p.add_argument("--bare", action="store_true",
                   help="no title and no caption in the images (for a page that says them)")
    args = p.parse_args(argv)
    try:
        runs = _read_runs(args.files)
    except (OSError, ValueError) as e:
        p.error(str(e))
    paths = save_compare_plots(runs, args.out, prefix=args.prefix, per_metric=args.per_metric,
                               title=not args.bare, caption=not args.bare)
    print("wrote: " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "METRICS", "WIDTH", "DPI", "plot_curves", "plot_alignment", "plot_compare",
    "plot_compare_metric", "plot_compare_alignment", "save_plots", "save_compare_plots",
    "alignment_caption", "main",
]
