"""PNG plots of training histories: loss/accuracy curves, alignment angles, FA-vs-BP comparisons.

Drawn with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``): no pyplot,
no global backend switch, no window; safe in scripts, tests and headless machines. Every function
returns the ``Figure`` and writes a PNG if given a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_MODE_COLORS = {"fa": "tab:blue", "bp": "tab:orange", "usf": "tab:green", "brsf": "tab:red",
                "frsf": "tab:purple"}
_LAYER_STYLES = ["-", "--", ":", "-."]
_LAYER_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
DPI = 110


def plot_curves(history, path: str | os.PathLike | None = None) -> Figure:
    """Loss (train, test) and, for classification, accuracy (train, test) against the epoch."""
    classification = bool(history.test_acc)
    fig, axes = _figure(2 if classification else 1)
    epochs = list(range(1, history.epochs + 1))
    ax = axes[0]
    ax.plot(epochs, history.loss, "-o", ms=3, label="train (mean over the epoch)")
    ax.plot(epochs, history.test_loss, "-s", ms=3, label="test (after the epoch)")
    _decorate(ax, "Loss (MSE)", "MSE loss", log=_wide_range(history.loss + history.test_loss))
    if classification:
        ax = axes[1]
        ax.plot(epochs, [100 * a for a in history.train_acc], "-o", ms=3, label="train")
        ax.plot(epochs, [100 * a for a in history.test_acc], "-s", ms=3, label="test")
        _decorate(ax, "Accuracy", "accuracy (%)")
        ax.set_ylim(top=100.5)
    fig.suptitle(_title(history))
    return _finish(fig, path)


def plot_alignment(history, path: str | os.PathLike | None = None) -> Figure:
    """Per layer, the weight-feedback angle and the update-vs-backprop angle, from epoch 0."""
    fig, axes = _figure(2)
    epochs = list(range(0, history.epochs + 1))
    names = _layer_names(history)
    for ax, key, title in (
        (axes[0], "weight_feedback_angle", "Angle between W and B"),
        (axes[1], "update_angle", "Angle between the update and backprop's"),
    ):
        rows = [history.initial.get(key)] + list(getattr(history, key))
        if rows[0] is None:
            rows, xs = rows[1:], epochs[1:]
        else:
            xs = epochs
        for i, name in enumerate(names):
            ax.plot(xs, [r[i] for r in rows], _LAYER_STYLES[i % 4], color=_LAYER_COLORS[i % 6],
                    marker="o", ms=3, label=name)
        _ninety(ax)
        _decorate(ax, title, "angle (degrees)", epoch0=True)
        ax.set_ylim(-3, max(100, _max(rows) + 5))
    fig.suptitle(_title(history) + "  (below 90° = aligned)")
    _caption(fig, [history.mode])
    return _finish(fig, path)


def plot_compare(histories, path: str | os.PathLike | None = None) -> Figure:
    """Several runs (e.g. modes fa and bp) overlaid: loss, and accuracy for classification."""
    hs = _as_dict(histories)
    classification = all(h.test_acc for h in hs.values())
    fig, axes = _figure(2 if classification else 1)
    all_losses = []
    for label, h in hs.items():
        c = _MODE_COLORS.get(label, None)
        epochs = list(range(1, h.epochs + 1))
        axes[0].plot(epochs, h.loss, "--", color=c, label=f"{label} train")
        axes[0].plot(epochs, h.test_loss, "-", marker="o", ms=3, color=c, label=f"{label} test")
        all_losses += h.loss + h.test_loss
        if classification:
            axes[1].plot(epochs, [100 * a for a in h.train_acc], "--", color=c,
                         label=f"{label} train")
            axes[1].plot(epochs, [100 * a for a in h.test_acc], "-", marker="o", ms=3, color=c,
                         label=f"{label} test")
    _decorate(axes[0], "Loss (MSE)", "MSE loss", log=_wide_range(all_losses))
    if classification:
        _decorate(axes[1], "Accuracy", "accuracy (%)")
        axes[1].set_ylim(top=100.5)
        best = ", ".join(f"{k} {100 * h.test_acc[-1]:.1f}%" for k, h in hs.items() if h.test_acc)
        axes[1].set_title(f"Accuracy (final test: {best})")
    fig.suptitle(_title(next(iter(hs.values())), modes=list(hs)))
    return _finish(fig, path)


def plot_compare_alignment(histories, path: str | os.PathLike | None = None) -> Figure:
    """Several runs' alignment angles: colour = run (mode), line style = layer."""
    hs = _as_dict(histories)
    fig, axes = _figure(2)
    top = 100.0
    for ax, key, title in (
        (axes[0], "weight_feedback_angle", "Angle between W and B"),
        (axes[1], "update_angle", "Angle between the update and backprop's"),
    ):
        for label, h in hs.items():
            c = _MODE_COLORS.get(label, None)
            rows = [h.initial.get(key)] + list(getattr(h, key))
            xs = list(range(0, h.epochs + 1))
            if rows[0] is None:
                rows, xs = rows[1:], xs[1:]
            for i, name in enumerate(_layer_names(h)):
                ax.plot(xs, [r[i] for r in rows], _LAYER_STYLES[i % 4], color=c, marker="o", ms=2.5,
                        label=f"{label} {name}")
            top = max(top, _max(rows) + 5)
        _ninety(ax)
        _decorate(ax, title, "angle (degrees)", epoch0=True)
        ax.set_ylim(-3, top)
    fig.suptitle(_title(next(iter(hs.values())), modes=list(hs)) + "  (below 90° = aligned)")
    _caption(fig, [h.mode for h in hs.values()])
    return _finish(fig, path)


def save_plots(history, out_dir: str | os.PathLike) -> list[Path]:
    """``curves.png`` and ``alignment.png`` in `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "curves.png", out / "alignment.png"]
    plot_curves(history, paths[0])
    plot_alignment(history, paths[1])
    return paths


def save_compare_plots(histories, out_dir: str | os.PathLike) -> list[Path]:
    """``compare_curves.png`` and ``compare_alignment.png`` in `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "compare_curves.png", out / "compare_alignment.png"]
    plot_compare(histories, paths[0])
    plot_compare_alignment(histories, paths[1])
    return paths


# ----------------------------------------------------------------------------------------- helpers


def _figure(n_panels: int):
    fig = Figure(figsize=(6.2 * n_panels, 4.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    return fig


def _decorate(ax, title: str, ylabel: str, *, log: bool = False, epoch0: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch" + (" (0 = before training)" if epoch0 else ""))
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", loc="best")


_SIGN_CONCORDANT = ("usf", "brsf", "frsf")


def alignment_caption(modes) -> str:
    """The note under an alignment figure, for the modes it plots: their W–B angles differ (near
    90° for fa's layer 1, 30–45° by construction for usf, brsf and frsf, 0° for bp)."""
    modes = list(dict.fromkeys(modes))
    if modes and set(modes) <= {"bp"}:
        return (
            "bp is backprop itself: B = W, so both angles are 0° in every layer, by construction.\n"
            "The 90° line is for reference: train fa (or --compare fa,bp) to see W align with B."
        )
    named = len(modes) > 1
    left = []
    if "fa" in modes or not set(modes) & {"bp", *_SIGN_CONCORDANT}:  # fa, or no mode recorded
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
    right = (
        "Right: measured on a fixed batch of training samples; the last layer gets the true "
        "gradient in every mode (0°)."
    )
    if "bp" in modes:
        right += " bp is backprop itself (B = W): 0° everywhere, on both sides."
    return "Left: " + "\n".join(left) + "\n" + right


def _caption(fig, modes) -> None:
    fig.supxlabel(alignment_caption(modes), fontsize="small", color="dimgray")


def _ninety(ax) -> None:
    ax.axhline(90, color="gray", ls=(0, (4, 3)), lw=1.2, label="90° (unaligned)")


def _layer_names(h) -> list[str]:
    sizes = h.config.get("sizes")
    n = len((h.weight_feedback_angle or [h.initial.get("weight_feedback_angle", [])])[0])
    if sizes and len(sizes) == n + 1:
        return [f"layer {i + 1} ({sizes[i]}→{sizes[i + 1]})" for i in range(n)]
    return [f"layer {i + 1}" for i in range(n)]


def _title(h, modes: list[str] | None = None) -> str:
    c = h.config
    sizes = c.get("sizes")
    arch = "-".join(map(str, sizes)) if sizes else "?"
    what = f"modes {' vs '.join(modes)}" if modes else f"mode {c.get('mode', '?')}"
    return (
        f"{c.get('dataset', '?')}: {what}, {c.get('backend', '?')}, "
        f"MLP {arch} {c.get('activation', '')}, "
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


def _max(rows) -> float:
    vals = [v for r in rows for v in r if v == v]
    return max(vals) if vals else 90.0


def _wide_range(values) -> bool:
    vals = [v for v in values if v == v and v > 0]
    return bool(vals) and max(vals) / min(vals) > 30


__all__ = [
    "plot_curves", "plot_alignment", "plot_compare", "plot_compare_alignment", "save_plots",
    "save_compare_plots", "alignment_caption",
]
