"""pyfa.plots: figures readable at a documentation page's width, legends off the curves, no empty
panel without a reason, and the command line that redraws them from saved histories."""

import json
import math
import sys

import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text

from pyfa import plots
from pyfa.train import History

PAGE_PX = 740  # the docs' content column (furo), in CSS pixels
MIN_PX = 11  # the smallest text we accept there


def run(mode: str, layers: int = 3, epochs: int = 2, classification: bool = True, **series):
    """A small synthetic history of `layers` dense layers."""
    sizes = [64, *[32] * (layers - 1), 10]
    acc = dict(train_acc=[0.8 + i / 100 for i in range(epochs)],
               test_acc=[0.79 + i / 100 for i in range(epochs)]) if classification else dict(
        train_acc=[], test_acc=[])
    initial = dict(train_acc=0.1, test_acc=0.1) if classification else {}
    row = [90.0 - 10 * i for i in range(layers)]
    h = dict(
        config={"mode": mode, "sizes": sizes, "dataset": "digits", "backend": "torch",
                "activation": "relu", "optimizer": "adam", "lr": 0.001, "batch_size": 32, "seed": 0},
        loss=[0.1 / (e + 1) for e in range(epochs)], test_loss=[0.09 / (e + 1) for e in range(epochs)],
        weight_feedback_angle=[row] * epochs, update_angle=[[60.0] * (layers - 1) + [0.0]] * epochs,
        feedback_norm_ratio=[[0.9] * layers] * epochs, epoch_time=[0.1] * epochs, **acc,
        initial={"test_loss": 0.2, "weight_feedback_angle": [90.0] * layers,
                 "update_angle": [70.0] * (layers - 1) + [0.0], "feedback_norm_ratio": [1.0] * layers,
                 **initial})
    for key, value in series.items():
        h[key] = value[1:]
        h["initial"][key] = value[0]
    return History.from_dict(h)


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def drawn_points(ax) -> list[float]:
    return [y for line in ax.lines for y in np.asarray(line.get_ydata(), float)
            if np.isfinite(y) and line.get_label() != "90° (unaligned)"]


def layout(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def all_figures(hs: dict, bare: bool = False):
    kw = dict(title=not bare)
    one = next(iter(hs.values()))
    return [plots.plot_curves(one, **kw), plots.plot_alignment(one, caption=not bare, **kw),
            plots.plot_compare(hs, **kw), plots.plot_compare_alignment(hs, caption=not bare, **kw),
            *[plots.plot_compare_metric(hs, m, caption=not bare, **kw) for m in plots.METRICS]]


# ---------------------------------------------------------------------------------- page width


def test_every_figure_is_page_wide_and_its_text_readable_at_page_width():
    """Shown at the docs' 740 px, the old 1430-2222 px figures had 5-7 px text."""
    hs = {m: run(m, layers=5) for m in ["fa", "bp", "usf", "brsf", "frsf", "kp", "dfa"]}
    for bare in (True, False):
        for fig in all_figures(hs, bare=bare):
            assert fig.get_figwidth() == plots.WIDTH and fig.dpi == plots.DPI
            scale = PAGE_PX / (plots.WIDTH * plots.DPI)  # the image shrinks to the column
            sizes = {t.get_text(): t.get_fontsize() for t in fig.findobj(Text)
                     if t.get_visible() and t.get_text().strip()}
            smallest = min(sizes, key=sizes.get)
            px = sizes[smallest] * plots.DPI / 72 * scale
            if bare:  # what the docs show: every piece of text, ticks included
                assert px >= MIN_PX, (smallest, px)
            else:  # pyfa train's own images: the grey caption may be a little smaller
                assert px >= 9.5, (smallest, px)


@pytest.mark.parametrize("classification", [True, False])
def test_titles_inside_and_legends_below_the_axes_covering_no_curve(classification):
    """The 5-mode comparison clipped its accuracy title, and its alignment legend covered curves."""
    hs = {m: run(m, classification=classification) for m in ["fa", "bp", "usf", "brsf", "frsf"]}
    for fig in [*all_figures(hs), plots.plot_curves(hs["fa"], note="stopped: " + "why " * 40)]:
        renderer = layout(fig)
        page = fig.bbox
        axes = [ax.get_tightbbox(renderer) for ax in fig.axes]
        legends = fig.findobj(Legend)
        ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)  # in the axes' boxes,
                 for tick in axis.get_major_ticks() + axis.get_minor_ticks()  # if drawn at all
                 for t in (tick.label1, tick.label2)}
        shown = [*axes, *[t.get_window_extent(renderer) for t in fig.findobj(Text)
                          if t.get_text().strip() and id(t) not in ticks]]
        for box in shown:
            assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, box
            assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, box
        assert len(legends) == 1
        box = legends[0].get_window_extent(renderer)
        assert box.y1 <= min(a.y0 for a in axes) + 0.5, "the legend is not below the panels"
        assert not any(box.overlaps(a) for a in axes)
        entries = [t.get_text() for t in legends[0].get_texts() if t.get_text().strip()]
        assert len(entries) <= 5 + 2  # runs (or layers) and line styles: not one per mode x layer
        if fig._suptitle is not None:  # the caption and legend do not overlap each other either
            assert not fig._suptitle.get_window_extent(renderer).overlaps(box)
        captions = [t for t in fig.subfigs[1].texts if t.get_text()] if fig.subfigs else []
        for c in captions:
            assert c.get_window_extent(renderer).y1 <= box.y0 + 0.5, "caption over the legend"


def test_layer_panels_wrap_to_two_centred_rows_beyond_three_layers():
    hs = {m: run(m, layers=5) for m in ["fa", "bp"]}
    fig = plots.plot_compare_metric(hs, "wb_angle", title=False, caption=False)
    renderer = layout(fig)
    boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
    assert len(boxes) == 5
    top, bottom = boxes[:3], boxes[3:]
    assert max(b.y0 for b in bottom) < min(b.y0 for b in top)
    centre = (fig.bbox.x0 + fig.bbox.x1) / 2
    assert abs((bottom[0].x0 + bottom[1].x1) / 2 - centre) < 0.06 * fig.bbox.width
    assert [ax.get_title() for ax in fig.axes] == [
        "layer 1 (64→32)", "layer 2 (32→32)", "layer 3 (32→32)", "layer 4 (32→32)", "layer 5 (32→10)"]
    three = plots.plot_compare_metric({m: run(m) for m in hs}, "wb_angle")
    boxes = [ax.get_window_extent(layout(three)) for ax in three.axes]
    assert len({round(b.y0) for b in boxes}) == 1  # one row


def test_bare_figures_carry_no_title_or_caption_and_full_ones_do():
    hs = {"fa": run("fa"), "bp": run("bp")}
    for fig in all_figures(hs, bare=True):
        assert fig._suptitle is None
        assert not any("Epoch 0" in t or "digits:" in t for t in texts(fig))
    full = all_figures(hs)
    for fig in full:
        assert fig._suptitle is not None and "digits: " in fig._suptitle.get_text()
    for fig in full[1:2] + full[3:]:  # the alignment figures explain themselves
        assert any("Epoch 0: before training" in t for t in texts(fig))


# -------------------------------------------------------------------------- nothing left empty


def test_plots_of_a_run_stopped_before_its_first_epoch_are_not_empty():
    h = History(config={"mode": "fa", "sizes": [64, 16, 10]},
                initial={"test_loss": 0.2, "train_acc": 0.1, "test_acc": 0.12,
                         "weight_feedback_angle": [90.0, 89.0], "update_angle": [80.0, 0.0],
                         "feedback_norm_ratio": [1.0, 1.0]})
    for fig in (plots.plot_curves(h), plots.plot_alignment(h),
                plots.plot_compare_alignment({"fa": h})):
        for ax in fig.axes:
            assert drawn_points(ax), f"{ax.get_title()} has nothing drawn"
    nan = float("nan")
    h2 = History(config={"mode": "fa"}, loss=[nan], test_loss=[nan], epoch_time=[0.1],
                 weight_feedback_angle=[[nan]], update_angle=[[nan]], feedback_norm_ratio=[[nan]],
                 initial={"weight_feedback_angle": [nan], "update_angle": [nan],
                          "feedback_norm_ratio": [nan]})
    assert "nothing finite to plot" in texts(plots.plot_curves(h2))
    assert texts(plots.plot_alignment(h2)).count("nothing finite to plot") == 3


def test_a_metric_a_rule_does_not_define_is_said_never_left_as_an_empty_panel():
    """DFA with conv layers has no W–B angle and no ‖B‖/‖W‖ in any layer (all NaN)."""
    nan = float("nan")
    undefined = [[nan] * 5] * 3
    dfa = run("dfa", layers=5, weight_feedback_angle=undefined, feedback_norm_ratio=undefined)
    fa = run("fa", layers=5)
    alone = plots.plot_alignment(dfa)
    panels = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in alone.axes}
    assert panels["W–B angle"] == ["not defined for dfa"]
    assert panels["‖B‖ / ‖W‖"] == ["not defined for dfa"]
    assert panels["Update angle (vs backprop)"] == [] and drawn_points(alone.axes[1])
    # in a comparison the other runs are drawn, and the legend says why dfa is not
    fig = plots.plot_compare_metric({"fa": fa, "dfa": dfa}, "wb_angle", title=False, caption=False)
    legend = fig.findobj(Legend)[0]
    assert "dfa (not defined)" in [t.get_text() for t in legend.get_texts()]
    assert all(drawn_points(ax) and not ax.texts for ax in fig.axes)
    assert "dfa (not defined)" not in [t.get_text() for t in plots.plot_compare_metric(
        {"fa": fa, "dfa": dfa}, "update_angle").findobj(Legend)[0].get_texts()]
    only = plots.plot_compare_metric({"dfa": dfa}, "norm_ratio")
    assert [t.get_text() for ax in only.axes for t in ax.texts] == ["not defined for dfa"] * 5
    stacked = plots.plot_compare_alignment({"fa": fa, "dfa": dfa})
    headings = [sf._suptitle.get_text() for sf in stacked.subfigs[0].subfigs]
    assert "dfa: not defined" in headings[0] and "dfa" not in headings[1]


def test_a_series_missing_from_some_panels_is_named_under_their_titles():
    """DFA's top layer uses no feedback matrix: no W–B angle there, and the panel says so."""
    nan = float("nan")
    wb = [[90.0, 90.0, nan]] * 3
    dfa = run("dfa", weight_feedback_angle=wb, feedback_norm_ratio=[[1.0, 1.0, nan]] * 3)
    titles = [ax.get_title() for ax in plots.plot_compare_metric(
        {"fa": run("fa"), "dfa": dfa}, "wb_angle").axes]
    assert titles[:2] == ["layer 1 (64→32)", "layer 2 (32→32)"]
    assert titles[2] == "layer 3 (32→10)\n(none for dfa: not defined)"
    own = plots.plot_alignment(dfa)
    assert own.axes[0].get_title() == "W–B angle\n(none for layer 3: not defined)"
    top = own.axes[0].lines[2]
    assert np.isnan(np.asarray(top.get_ydata(), float)).all()


def test_a_history_from_before_a_metric_existed_says_not_recorded():
    h = run("fa").to_dict()
    del h["feedback_norm_ratio"], h["initial"]["feedback_norm_ratio"]  # as older pyfa wrote it
    old = History.from_dict(json.loads(json.dumps(h)))
    fig = plots.plot_alignment(old)
    assert [t.get_text() for t in fig.axes[2].texts] == ["not recorded"]


# ------------------------------------------------------------------------------------- captions


def test_alignment_caption_fits_the_modes_plotted():
    h = History(config={"mode": "bp", "sizes": [64, 16, 10]}, loss=[0.1],
                weight_feedback_angle=[[0.0, 0.0]], update_angle=[[0.0, 0.0]],
                initial={"weight_feedback_angle": [0.0, 0.0], "update_angle": [0.0, 0.0]})
    for text in (plots.alignment_caption(["bp"]),
                 " ".join(texts(plots.plot_alignment(h))),
                 " ".join(texts(plots.plot_compare_alignment({"bp": h})))):
        assert "stays near 90" not in text and "0°" in text and "backprop itself" in text
    assert "stays near 90" in plots.alignment_caption(["fa"])
    assert "stays near 90" in plots.alignment_caption(["fa", "bp"])
    usf = plots.alignment_caption(["usf"])
    assert "stays near 90" not in usf and "signs" in usf
    h.config["mode"] = "fa"
    assert any("stays near" in t for t in texts(plots.plot_alignment(h)))
    assert "Update angle" not in plots.alignment_caption(["fa", "bp"], "wb_angle")
    assert "stays near 90" not in plots.alignment_caption(["fa", "bp"], "update_angle")


# --------------------------------------------------------------------------------- files and CLI


def test_save_compare_plots_writes_one_figure_per_metric_on_request(tmp_path):
    hs = {"fa": run("fa"), "bp": run("bp")}
    assert [p.name for p in plots.save_compare_plots(hs, tmp_path)] == [
        "compare_curves.png", "compare_alignment.png"]
    paths = plots.save_compare_plots(hs, tmp_path, prefix="digits_", per_metric=True)
    assert [p.name for p in paths] == ["digits_curves.png", "digits_wb_angle.png",
                                       "digits_update_angle.png", "digits_norm_ratio.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown metric 'angle'; expected one of wb_angle"):
        plots.plot_compare_metric(hs, "angle")


def test_command_line_redraws_from_saved_histories(tmp_path, capsys):
    histories = tmp_path / "histories.json"
    histories.write_text(json.dumps({m: json.loads(run(m).to_json()) for m in ("fa", "bp")}))
    single = tmp_path / "history.json"
    run("kp").to_json(single)
    assert plots.main([str(histories), str(single), "--out", str(tmp_path / "out"),
                       "--prefix", "x_", "--per-metric", "--bare"]) == 0
    assert "x_norm_ratio.png" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x_curves.png", "x_norm_ratio.png", "x_update_angle.png", "x_wb_angle.png"]
    with pytest.raises(SystemExit) as e:
        plots.main([str(tmp_path / "missing.json"), "--out", str(tmp_path)])
    assert e.value.code == 2 and "missing.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(SystemExit):
        plots.main([str(tmp_path / "bad.json"), "--out", str(tmp_path)])
    assert "is not a pyfa training history" in capsys.readouterr().err


def test_figures_do_not_depend_on_the_callers_matplotlib_settings():
    import matplotlib

    h = run("fa")
    with matplotlib.rc_context({"font.size": 20, "lines.linewidth": 5}):
        fig = plots.plot_curves(h)
    assert fig.axes[0].title.get_fontsize() == pytest.approx(9.5)
    assert not math.isclose(fig.axes[0].lines[0].get_linewidth(), 5)


def test_accuracy_benchmark_redraws_its_plots_from_saved_histories_without_training(
        tmp_path, capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "accuracy_benchmark", Path(__file__).parents[1] / "benchmarks" / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, accuracy)  # for its dataclasses
    spec.loader.exec_module(accuracy)
    monkeypatch.setattr(accuracy, "train", None)  # nothing may train
    monkeypatch.setattr(accuracy, "load_dataset", None)  # nor load data
    (tmp_path / "out" / "fashion-lenet").mkdir(parents=True)
    for mode in ("fa", "bp"):
        run(mode, layers=5).to_json(tmp_path / "out" / "fashion-lenet" / f"{mode}-seed0.json")
    argv = ["--plots-only", "--only", "fashion-lenet", "--out", str(tmp_path / "out")]
    assert accuracy.main([*argv, "--plots-to", str(tmp_path / "docs")]) == 0
    assert "fashion-lenet (fa, bp): wrote" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "fashion_lenet_curves.png", "fashion_lenet_norm_ratio.png", "fashion_lenet_update_angle.png",
        "fashion_lenet_wb_angle.png"]
    assert {"compare_curves.png", "compare_wb_angle.png"} <= {
        p.name for p in (tmp_path / "out" / "fashion-lenet").iterdir()}
    assert accuracy.main(["--plots-only", "--only", "mnist1d", "--out", str(tmp_path / "out")]) == 1
    assert "mnist1d: no histories in" in capsys.readouterr().err
