"""Input checks on the host: float inputs on the expected scale (`check_input_scale`),
labels in range (`check_labels`), a whole split (`check_arrays`), and the frame
inspection that points their warnings at the user's code rather than at dtp_eqx."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._models import _is_autoencoder

_WRAPPERS = ("jaxtyping", "beartype", "typeguard")
"""Packages whose runtime type checkers wrap functions in frames of their own."""


def _module(frame) -> str:
    return frame.f_globals.get("__name__", "") if frame is not None else ""


def _unwrap(frame):
    while _module(frame).partition(".")[0] in _WRAPPERS:
        frame = frame.f_back
    return frame


def _called_from_package() -> bool:
    """Whether the function calling this one was called from inside dtp_eqx (as `fit`
    calls `evaluate` on splits `check_arrays` has already checked), looking through the
    wrappers a type checker may add."""
    import sys

    caller = _unwrap(sys._getframe(1))  # the function that asks (this one may be wrapped)
    return _module(_unwrap(caller.f_back)).startswith("dtp_eqx.")


def _user_stacklevel() -> int:
    """The `stacklevel` for a warning raised by the function calling this one that
    points at the first frame outside dtp_eqx (and type-checker wrappers): the user's
    call of `fit` or `evaluate`."""
    import sys

    frame, level = _unwrap(sys._getframe(1)), 1  # the warning's caller: level 1
    while frame is not None and (
        _module(frame).startswith("dtp_eqx.") or _module(frame).partition(".")[0] in _WRAPPERS
    ):
        frame, level = frame.f_back, level + 1
    return level


def check_input_scale(x, what: str) -> None:
    """Reject integer inputs and warn on float inputs that look like 0-255 pixels.

    `x` is a NumPy or JAX array; `what` names it in the messages (e.g. `"x"`). Signed
    or Gaussian inputs (any negative value) are never warned about.

    Raises:
        ValueError: when `x` has an integer (or bool, or non-numeric) dtype.

    Warns:
        UserWarning: when `x` holds floats with minimum `>= 0` and maximum `> 2`, the
            range of 0-255 pixels, which dtp_eqx's networks expect scaled to [0, 1]. It
            points at the user's call (the first frame outside dtp_eqx).
    """
    dtype = np.dtype(x.dtype)
    if not np.issubdtype(dtype, np.floating):
        hint = " (0-255 pixels: x.astype(np.float32) / 255)" if np.issubdtype(
            dtype, np.integer) else ""
        raise ValueError(
            f"{what} has dtype {dtype}; expected floating-point inputs{hint}, e.g. "
            "pixels scaled to [0, 1]."
        )
    if x.size == 0:
        return
    xp = np if isinstance(x, np.ndarray) else jnp
    lo, hi = float(xp.min(x)), float(xp.max(x))
    if lo >= 0 and hi > 2:
        import warnings

        warnings.warn(
            f"{what} ranges over [{lo:g}, {hi:g}], like 0-255 pixels: dtp_eqx's networks "
            "expect inputs scaled to [0, 1] (divide by 255: x / 255), and inputs this "
            "large saturate their units.",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def check_labels(y, n: int, n_classes: int, what: str) -> None:
    """Raise a `ValueError` naming `what` (e.g. `"train labels"`) unless `y`, a NumPy or
    JAX array, holds `n` integer labels in `[0, n_classes)`, shape `(n,)`."""
    if y.shape != (n,) or not np.issubdtype(np.dtype(y.dtype), np.integer):
        raise ValueError(
            f"{what} have shape {y.shape} and dtype {y.dtype}; expected "
            f"integers of shape ({n},)."
        )
    if n:
        xp = np if isinstance(y, np.ndarray) else jnp
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                f"{what} range over [{lo}, {hi}]; the network has "
                f"{n_classes} classes, so labels must lie in [0, {n_classes - 1}]."
            )


def check_arrays(model, x, y, name: str) -> tuple[Array, Array]:
    """Validate one split on the host and move it to the device as float32 / int32.

    `name` (`"train"`, `"valid"`, `"test"`) names the split in the messages: `x` is
    `data.x_{name}`, shape `(n, n_in)`, and `y` is `data.y_{name}`, shape `(n,)`. An
    auto-encoder (a single layer) ignores labels, which may then be None.

    Raises:
        ValueError: for inputs of the wrong shape, of an integer dtype (such as uint8
            pixels: pass `x.astype(np.float32) / 255`) or with NaN or infinite values,
            and for labels that are not integers of shape `(n,)` in `[0, n_classes)`.

    Warns:
        UserWarning: for float inputs that look like 0-255 pixels (minimum `>= 0`,
            maximum `> 2`); see `check_input_scale`.
    """
    x = np.asarray(x)
    n_in = model.in_features
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(
            f"{name} inputs have shape {x.shape}; the model expects (n, {n_in})."
        )
    check_input_scale(x, f"data.x_{name} (the {name} inputs)")
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise ValueError(f"{name} inputs contain {bad} NaN or infinite values.")
    if _is_autoencoder(model):
        return jnp.asarray(x, jnp.float32), jnp.zeros(x.shape[0], jnp.int32)
    y = np.asarray(y)
    check_labels(y, x.shape[0], model.n_classes, f"{name} labels")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
