"""The explore widget: precomputed frames linked in the browser, live redraws with a kernel."""

import threading

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import dtp_eqx  # noqa: E402

widgets = pytest.importorskip("ipywidgets")


def _drawer(calls):
    def draw(sigma, width):
        calls.append((sigma, width))
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.plot([0, width], [0, sigma])
        return fig

    return draw


def _settings():
    return {"sigma": dtp_eqx.Setting(grid=[0.1, 0.5, 0.9], low=0.0, high=2.0),
            "width": dtp_eqx.Setting(grid=[8, 64], low=1, high=512, integer=True)}


def _links(explorer):
    """(source model, source trait, target model, target trait) of every jslink made."""
    assert all(type(link).__name__ == "Link" for link in explorer.links)
    return [(link.source[0], link.source[1], link.target[0], link.target[1])
            for link in explorer.links]


def test_every_combination_of_a_two_d_grid_is_precomputed_and_linked():
    calls = []
    explorer = dtp_eqx.explore(_drawer(calls), _settings(), values={"width": 64})
    assert sorted(calls) == sorted((s, w) for s in (0.1, 0.5, 0.9) for w in (8, 64))
    rows = explorer.frames.children
    assert len(rows) == 3 and all(len(row.children) == 2 for row in rows)
    assert all(isinstance(im, widgets.Image) and im.value for row in rows for im in row.children)
    # the first slider picks the row, the second the column of every row: in the browser
    links = _links(explorer)
    sigma, width = explorer.sliders["sigma"], explorer.sliders["width"]
    assert (sigma, "index", explorer.frames, "selected_index") in links
    for row in rows:
        assert (width, "index", row, "selected_index") in links
    assert [row.selected_index for row in rows] == [1, 1, 1]  # values={"width": 64}
    assert dtp_eqx.grid_size(_settings()) == 6
    plt.close("all")


def test_a_live_value_off_the_grid_redraws():
    calls = []
    explorer = dtp_eqx.explore(_drawer(calls), _settings())
    n = len(calls)
    assert explorer.view.selected_index == 0  # static frames first
    explorer.live["sigma"].value = 0.37  # not on the grid
    assert calls[n:] == [(0.37, 8)]
    assert explorer.view.selected_index == 1 and explorer.image.value
    explorer.live["width"].value = 100
    assert calls[-1] == (0.37, 100)
    # moving a grid slider shows its precomputed frame again and draws nothing
    explorer.sliders["sigma"].value = 0.5
    assert explorer.view.selected_index == 0 and len(calls) == n + 2
    assert explorer.live["sigma"].value == 0.5
    plt.close("all")


def test_an_expensive_redraw_waits_for_its_button_and_runs_once_at_a_time():
    release, started = threading.Event(), threading.Event()
    calls = []

    def draw(steps, progress):
        calls.append(steps)
        if len(calls) > 2:  # the static frames are drawn at once
            started.set()
            progress(0.5)
            release.wait(10)
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.plot(range(steps))
        return fig

    explorer = dtp_eqx.explore(
        draw, {"steps": dtp_eqx.Setting(grid=[2, 4], low=1, high=50, integer=True)},
        expensive=True)
    explorer.live["steps"].value = 7
    assert calls == [2, 4]  # a live change alone trains nothing
    before = explorer.image.value
    assert explorer.start()
    assert started.wait(10)
    assert explorer.button.disabled and explorer.progress.value == 0.5
    assert not explorer.start()  # already running
    assert explorer.image.value == before  # the old figure stays meanwhile
    release.set()
    explorer.wait(10)
    assert calls == [2, 4, 7] and explorer.error is None
    assert explorer.image.value != before and explorer.view.selected_index == 1
    assert not explorer.button.disabled and explorer.progress.value == 1.0
    plt.close("all")


def test_a_failed_recomputation_is_reported_and_frees_the_button():
    def draw(steps):
        if steps == 9:
            raise RuntimeError("diverged")
        return plt.subplots(figsize=(2, 1))[0]

    explorer = dtp_eqx.explore(
        draw, {"steps": dtp_eqx.Setting(grid=[1], low=1, high=10, integer=True)}, expensive=True)
    explorer.live["steps"].value = 9
    explorer.start()
    explorer.wait(10)
    assert isinstance(explorer.error, RuntimeError)
    assert "diverged" in explorer.status.value and not explorer.button.disabled
    plt.close("all")


def test_choices_and_single_value_grids():
    seen = []

    def draw(method, sigma):
        seen.append((method, sigma))
        return plt.subplots(figsize=(2, 1))[0]

    explorer = dtp_eqx.explore(draw, {
        "method": dtp_eqx.Setting(grid=["dtp", "tp"], choices=["dtp", "tp", "bp"]),
        "sigma": dtp_eqx.Setting(grid=[0.3], low=0.0, high=1.0),  # live only
    })
    assert list(explorer.sliders) == ["method"] and len(explorer.frames.children) == 2
    assert isinstance(explorer.live["method"], widgets.Dropdown)
    explorer.live["method"].value = "bp"
    assert seen[-1] == ("bp", 0.3)
    plt.close("all")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"grid": []}, "at least one value"),
     ({"grid": [3.0], "low": 0.0, "high": 1.0}, r"outside \[0.0, 1.0\]"),
     ({"grid": [0.5]}, "needs low <= high"),
     ({"grid": ["x"], "choices": ["a", "b"]}, "not among choices"),
     ({"grid": ["a"], "choices": ["a"], "low": 0.0, "high": 1.0}, "not both")],
)
def test_setting_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dtp_eqx.Setting(**kwargs)


def test_explore_errors():
    draw = _drawer([])
    three = {**_settings(), "depth": dtp_eqx.Setting(grid=[1, 2], low=1, high=5, integer=True)}
    with pytest.raises(ValueError, match="at most two"):
        dtp_eqx.explore(lambda **v: None, three)
    with pytest.raises(ValueError, match="not in its grid"):
        dtp_eqx.explore(draw, _settings(), values={"sigma": 0.2})
    with pytest.raises(ValueError, match="which are not settings"):
        dtp_eqx.explore(draw, _settings(), values={"depth": 2})
    with pytest.raises(TypeError, match="settings"):  # ours, or the type checker's
        dtp_eqx.explore(draw, {"sigma": (0.1, 0.2)})
    with pytest.raises(ValueError, match=r"sigma=3.0 lies outside"):
        _settings()["sigma"].check("sigma", 3.0)


def test_prose_sets_a_formatted_variable_for_the_text():
    import __main__

    assert dtp_eqx.prose("prose_test_value", 0.01234, ".1%") is None
    assert __main__.prose_test_value == "1.2%"  # without IPython: the script's namespace
    dtp_eqx.prose("prose_test_count", 12000, ",")
    assert __main__.prose_test_count == "12,000"
    with pytest.raises(ValueError, match="identifier"):
        dtp_eqx.prose("not a name", 1)
    dtp_eqx.prose_all(".2f", prose_test_a=1, prose_test_b=0.125)
    assert (__main__.prose_test_a, __main__.prose_test_b) == ("1.00", "0.12")


def test_percent_and_gap_phrases():
    assert dtp_eqx.percent(0.01234) == "1.23%" and dtp_eqx.percent(0.5, 0) == "50%"
    assert dtp_eqx.gap_phrase(0.0198, 0.0155) == "0.43 percentage points above"
    assert dtp_eqx.gap_phrase(0.0150, 0.0155) == "0.05 percentage points below"
    assert dtp_eqx.gap_phrase(0.01551, 0.0155) == "level with"
    assert dtp_eqx.points(0.0155 - 0.0198) == "0.43"
