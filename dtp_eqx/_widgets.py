"""Helpers for the book: quick mode, and figure sliders that work without a kernel."""

from __future__ import annotations

import io
import os


def quick_mode() -> bool:
    """True when `DTP_EQX_QUICK=1`: book pages then train briefly (tests and CI)."""
    return os.environ.get("DTP_EQX_QUICK", "") not in ("", "0")


def prose(name: str, value, fmt: str = "") -> None:
    """Format `value` for the page's text and make it the notebook variable `name`.

    The book's prose shows computed numbers with MyST's `{eval}` role, which both the
    rendered book (MyST-NB, inline execution) and JupyterLab (jupyterlab-myst) evaluate in
    the page's kernel: `prose("error", 0.0123, ".1%")` sets `error = "1.2%"`, and the text
    writes {eval}`error`. The name may be built in a loop, e.g. `f"angle_layer{i}"`.

    Args:
        name: a Python identifier, the variable the text names.
        value: any value `format(value, fmt)` accepts.
        fmt: a format spec, e.g. `".3f"`, `".1%"` or `","` (default: `str(value)`).

    The string is set as `name` in the notebook's namespace when there is one, and in
    the `__main__` module's (a script's) otherwise; nothing is returned, so a call that
    ends a cell shows nothing.
    """
    import sys

    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"name={name!r} must be a Python identifier for {{eval}} to name it.")
    text = format(value, fmt)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - the book extra brings IPython
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    namespace = shell.user_ns if shell is not None else vars(sys.modules["__main__"])
    namespace[name] = text


def percent(value, digits: int = 2) -> str:
    """A fraction as a percentage for the text: `percent(0.01234)` is `"1.23%"`."""
    return f"{float(value):.{digits}%}"


def points(difference, digits: int = 2) -> str:
    """The size of a difference of two fractions in percentage points, for the text:
    `points(0.0198 - 0.0155)` is `"0.43"`."""
    return f"{100 * abs(float(difference)):.{digits}f}"


def gap_phrase(ours, reference, *, digits: int = 2) -> str:
    """How `ours` compares with `reference` (both fractions), for the text:
    `"0.12 percentage points above"`, `"... below"`, or `"level with"` when the gap
    rounds to zero at `digits` decimals of a point."""
    gap = float(ours) - float(reference)
    if abs(100 * gap) < 0.5 * 10.0**-digits:
        return "level with"
    return f"{points(gap, digits)} percentage points {'above' if gap > 0 else 'below'}"


def prose_all(fmt: str = "", **values) -> None:
    """`prose(name, value, fmt)` for every `name=value`: several text values at once.

    `prose_all(".1%", dtp=0.0198, ste=0.0195)` sets `dtp = "2.0%"` and `ste = "1.9%"`.
    """
    for name, value in values.items():
        prose(name, value, fmt)


def figure_png(fig, *, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_slider(figures, labels, *, description: str = "", index: int = 0):
    """A slider that flips through precomputed figures, in JupyterLab and in static HTML.

    Each figure becomes an `ipywidgets.Image` child of an `ipywidgets.Stack`; a
    `SelectionSlider` over `labels` is `jslink`ed to the stack's `selected_index`, so the
    link runs in the browser and the rendered book responds without a kernel.

    Args:
        figures: matplotlib figures (closed after rendering) or PNG bytes.
        labels: one label per figure, shown on the slider.
        description: the slider's label (keyword-only).
        index: the figure shown first (keyword-only).

    Returns:
        An `ipywidgets.VBox` holding the slider and the stack.
    """
    try:
        import ipywidgets as widgets
    except ImportError as err:  # pragma: no cover - the book extra brings it
        raise ImportError("figure_slider needs ipywidgets: pip install 'dtp-eqx[book]'") from err
    figures, labels = list(figures), [str(label) for label in labels]
    if len(figures) != len(labels) or not figures:
        raise ValueError(
            f"figures and labels must have the same, nonzero length; got {len(figures)} "
            f"figures and {len(labels)} labels."
        )
    images = [
        widgets.Image(value=f if isinstance(f, bytes) else figure_png(f), format="png")
        for f in figures
    ]
    stack = widgets.Stack(images, selected_index=index)
    slider = widgets.SelectionSlider(
        options=labels, index=index, description=description,
        style={"description_width": "initial"}, layout=widgets.Layout(width="480px"),
    )
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])
