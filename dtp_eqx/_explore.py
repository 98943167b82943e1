"""One widget for both ways of reading the book: precomputed frames that step in the
static HTML (no kernel), and live recomputation for any value in a running kernel.

A page gives `explore` a function of named settings that draws a figure, and for each
setting a `Setting`: a small grid of values to precompute, and the range (or choices)
that a kernel may recompute anywhere in. The precomputed frames sit in nested
`ipywidgets.Stack` widgets whose indices are linked in the browser (`jslink`) to one
slider per grid setting, so the
rendered book steps through them in the browser, for one or two settings at once. The
same widget, with a kernel, also offers a box per setting for any value in its range:
changing it redraws the figure, or, for a drawing that trains something, waits for its
button, shows a progress bar and keeps the old figure until the new one is ready.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import threading
from collections.abc import Callable

from ._widgets import figure_png


@dataclasses.dataclass(frozen=True)
class Setting:
    """One knob of an `explore` widget.

    Attributes:
        grid: the values precomputed for the static page, in slider order (at least one).
            A setting with one grid value is fixed on the static page and live only.
        low, high: the range a kernel may recompute anywhere in (numbers); None for a
            setting chosen from `choices`.
        choices: for a setting that is not a number (or a number from a fixed list): every
            value a kernel may choose; the grid must be among them.
        integer: the setting is an integer (its live box rounds).
        description: the label of its controls (default: its name).
    """

    grid: tuple | list
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple | list | None = None
    integer: bool = False
    description: str = ""

    def __post_init__(self):
        grid = tuple(self.grid)
        object.__setattr__(self, "grid", grid)
        if not grid:
            raise ValueError("Setting(grid=()) needs at least one value to precompute.")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            missing = [v for v in grid if v not in self.choices]
            if missing:
                raise ValueError(f"grid values {missing} are not among choices={self.choices}.")
            if self.low is not None or self.high is not None:
                raise ValueError("give a Setting either choices or a low/high range, not both.")
            return
        if self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError(
                f"Setting(low={self.low!r}, high={self.high!r}) needs low <= high (or "
                "choices=... for a setting that is not a range)."
            )
        outside = [v for v in grid if not self.low <= v <= self.high]
        if outside:
            raise ValueError(f"grid values {outside} lie outside [{self.low}, {self.high}].")

    def check(self, name: str, value):
        """`value` as this setting takes it, or a `ValueError` naming `name`."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{name}={value!r} is not one of {list(self.choices)}.")
            return value
        if not self.low <= value <= self.high:
            raise ValueError(f"{name}={value!r} lies outside [{self.low}, {self.high}].")
        return int(round(value)) if self.integer else float(value)


class Explorer:
    """What `explore` returns: the widget (`.widget`, displayed by the notebook) and its
    parts, for tests and for pages that lay them out themselves.

    Attributes:
        widget: an `ipywidgets.VBox` of the controls and the figure.
        sliders: `{name: SelectionSlider}` over each grid setting's precomputed values.
        links: the `jslink` links from the sliders to the stacks of frames (run in the browser).
        live: `{name: control}`, one box per setting for any value in its range (kernel).
        frames: the static figures, nested `Stack` widgets indexed by the sliders.
        image: the `Image` showing the latest live figure.
        view: a `Stack` of `[frames, image]`: the static frames until a live value is drawn.
        button: the `Button` that starts an expensive recomputation, or None.
        progress: the `FloatProgress` of that recomputation, or None.
    """

    def __init__(self, draw, settings, *, expensive, dpi, values):
        import ipywidgets as widgets

        self.draw, self.settings, self.dpi = draw, settings, dpi
        self.expensive = expensive
        self._busy = threading.Lock()
        self._syncing = False
        self._thread = None
        self.error = None
        grid_names = [n for n, s in settings.items() if len(s.grid) > 1]
        if len(grid_names) > 2:
            raise ValueError(
                f"settings {grid_names} all have grids; precompute at most two at once "
                "(give the others a single grid value: they stay live in a kernel)."
            )
        self.grid_names = grid_names
        start = {n: s.grid[0] for n, s in settings.items()}
        start.update(values or {})
        for name, value in start.items():
            if value not in settings[name].grid:
                raise ValueError(f"values[{name!r}]={value!r} is not in its grid {settings[name].grid}.")
        self.values = start
        self.frames = self._frames(widgets)
        self.sliders, self.links = {}, []
        for axis, name in enumerate(grid_names):
            setting = settings[name]
            slider = widgets.SelectionSlider(
                options=[(_label(v), v) for v in setting.grid], value=start[name],
                description=setting.description or name, continuous_update=True,
                style={"description_width": "120px"}, layout=widgets.Layout(width="480px"),
            )
            for stack in self._stacks_at(axis):
                self.links.append(widgets.jslink((slider, "index"), (stack, "selected_index")))
            slider.observe(self._on_slider, names="value")
            self.sliders[name] = slider
        self.live = {name: self._live_control(widgets, name, s) for name, s in settings.items()}
        self.image = widgets.Image(format="png")
        self.view = widgets.Stack([self.frames, self.image], selected_index=0)
        self.button = self.progress = None
        live_row = list(self.live.values())
        if expensive:
            # no icon: an icon font is a file the static book would have to serve
            self.button = widgets.Button(description="Train and draw",
                                         tooltip="recompute with the values on the left")
            self.button.on_click(lambda _: self.start())
            self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0,
                                                  layout=widgets.Layout(width="160px"))
            live_row += [self.button, self.progress]
        action = "then press the button" if expensive else "it redraws at once"
        self.status = widgets.HTML(
            f"<small>The sliders step through precomputed figures (they work in the "
            f"static book too). With a running kernel, type any value below; {action}."
            "</small>"
        )
        self.widget = widgets.VBox([
            *self.sliders.values(),
            self.status,
            widgets.HBox(live_row, layout=widgets.Layout(flex_flow="row wrap")),
            self.view,
        ])

    # the static frames
    def _frames(self, widgets):
        def image(values):
            return widgets.Image(value=self._png(values), format="png")

        fixed = {n: v for n, v in self.values.items() if n not in self.grid_names}
        if not self.grid_names:
            return widgets.Stack([image(fixed)], selected_index=0)
        first = self.grid_names[0]
        grid0 = self.settings[first].grid
        if len(self.grid_names) == 1:
            return widgets.Stack([image({**fixed, first: v}) for v in grid0],
                                 selected_index=grid0.index(self.values[first]))
        second = self.grid_names[1]
        grid1 = self.settings[second].grid
        rows = [
            widgets.Stack([image({**fixed, first: a, second: b}) for b in grid1],
                          selected_index=grid1.index(self.values[second]))
            for a in grid0
        ]
        return widgets.Stack(rows, selected_index=grid0.index(self.values[first]))

    def _stacks_at(self, axis):
        if axis == 0:
            return [self.frames]
        return list(self.frames.children)

    def _png(self, values) -> bytes:
        kwargs = dict(values)
        if self.expensive and "progress" in inspect.signature(self.draw).parameters:
            kwargs["progress"] = lambda fraction: None
        return figure_png(self.draw(**kwargs), dpi=self.dpi)

    # the live controls
    def _live_control(self, widgets, name, setting):
        label = setting.description or name
        style = {"description_width": "initial"}
        layout = widgets.Layout(width="210px")
        if setting.choices is not None:
            control = widgets.Dropdown(options=[(_label(c), c) for c in setting.choices],
                                       value=self.values[name], description=label,
                                       style=style, layout=layout)
        elif setting.integer:
            control = widgets.BoundedIntText(value=self.values[name], min=int(setting.low),
                                             max=int(setting.high), description=label,
                                             style=style, layout=layout)
        else:
            control = widgets.BoundedFloatText(value=self.values[name], min=setting.low,
                                               max=setting.high, step=None,
                                               description=label, style=style, layout=layout)
        control.observe(lambda change, name=name: self._on_live(name, change["new"]),
                        names="value")
        return control

    def _on_slider(self, change):
        """A grid slider moved (with a kernel): show its precomputed frame again."""
        self._syncing = True
        try:
            for name, slider in self.sliders.items():
                self.values[name] = slider.value
                self.live[name].value = slider.value
        finally:
            self._syncing = False
        self.view.selected_index = 0

    def _on_live(self, name, value):
        if self._syncing:  # a grid slider set the box: its frame is precomputed
            return
        self.values[name] = self.settings[name].check(name, value)
        if not self.expensive:
            self.redraw()

    def redraw(self):
        """Draw the figure for the current live values now (blocking) and show it."""
        self.image.value = figure_png(self.draw(**self.values), dpi=self.dpi)
        self.view.selected_index = 1

    def start(self) -> bool:
        """Start an expensive recomputation in the background; False if one is running.

        The previous figure stays until the new one is ready; the button is disabled and
        the progress bar moves while it runs (`draw` gets `progress=fraction_callback`
        when it takes a `progress` argument).
        """
        if not self._busy.acquire(blocking=False):
            return False
        values = dict(self.values)
        self.button.disabled = True
        self.progress.value = 0.0
        self.progress.bar_style = "info"

        def work():
            try:
                kwargs = dict(values)
                if "progress" in inspect.signature(self.draw).parameters:
                    kwargs["progress"] = self._set_progress
                png = figure_png(self.draw(**kwargs), dpi=self.dpi)
                self.image.value = png
                self.view.selected_index = 1
                self.progress.value = 1.0
                self.progress.bar_style = "success"
                self.error = None
            except Exception as err:  # shown to the reader, kept for tests
                self.error = err
                self.progress.bar_style = "danger"
                self.status.value = f"<small>Recomputation failed: {err!r}</small>"
            finally:
                self.button.disabled = False
                self._busy.release()

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        return True

    def _set_progress(self, fraction):
        # a draw may report every step: send the browser a change of at least 1% only
        value = round(min(max(float(fraction), 0.0), 1.0), 2)
        if value != self.progress.value:
            self.progress.value = value

    def wait(self, timeout: float | int | None = None):
        """Wait for a recomputation started by `start` (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def explore(
    draw: Callable,
    settings: dict[str, Setting],
    *,
    expensive: bool = False,
    values: dict | None = None,
    dpi: int = 90,
) -> Explorer:
    """A figure driven by named settings: precomputed frames for the static book, live
    recomputation for any value with a kernel. One call serves both.

    Args:
        draw: `draw(**values)` returns a matplotlib figure for one value of every setting
            (it is closed after rendering). With `expensive=True` it may also take
            `progress`, a callback it calls with the fraction done, from 0 to 1.
        settings: `{name: Setting}`; at most two settings may have grids of more than one
            value (every combination of the grids is precomputed).
        expensive: the drawing trains something: live changes wait for the widget's
            button, which runs `draw` in the background with a progress bar, keeps the
            old figure meanwhile and cannot run twice at once (keyword-only).
        values: the grid values shown first (default: each grid's first) (keyword-only).
        dpi: resolution of the figures (keyword-only).

    Returns:
        An `Explorer`; the notebook displays its widget.

    Example:
        >>> def draw(sigma, width):
        ...     fig, ax = plt.subplots()
        ...     ax.plot(np.random.default_rng(0).normal(0, sigma, width))
        ...     return fig
        >>> dtp_eqx.explore(draw, {
        ...     "sigma": dtp_eqx.Setting(grid=[0.1, 0.5], low=0.0, high=2.0),
        ...     "width": dtp_eqx.Setting(grid=[8, 64], low=1, high=512, integer=True)})
    """
    try:
        import ipywidgets  # noqa: F401
    except ImportError as err:  # pragma: no cover - the book extra brings it
        raise ImportError("explore needs ipywidgets: pip install 'dtp-eqx[book]'") from err
    if not callable(draw):
        raise TypeError(f"draw={draw!r} must be a function of the settings returning a figure.")
    if not settings:
        raise ValueError("settings is empty; explore needs at least one Setting.")
    bad = {n: type(s).__name__ for n, s in settings.items() if not isinstance(s, Setting)}
    if bad:
        raise TypeError(f"settings {bad} must be dtp_eqx.Setting instances.")
    unknown = sorted(set(values or {}) - set(settings))
    if unknown:
        raise ValueError(f"values names {unknown}, which are not settings {sorted(settings)}.")
    return Explorer(draw, dict(settings), expensive=expensive, dpi=dpi, values=values)


def grid_size(settings: dict[str, Setting]) -> int:
    """How many frames `explore` precomputes for `settings` (the product of grid sizes)."""
    return math.prod(len(s.grid) for s in settings.values())
