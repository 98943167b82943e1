"""What kind of model a function is given: an ensemble of stacked members
(`ensemble_size`, `ensemble_member`) or one model, an auto-encoder or a classifier, a
network that samples or not; and `as_key`, which turns the key (one per member for an
ensemble) given with it into a typed JAX key."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._config import IntLike, Keys
from ._layers import AbstractDTPLayer


def as_key(key) -> Keys:
    """A typed key (or batch of keys) from `jax.random.key`, also accepting raw uint32 keys
    (from the legacy `jax.random.PRNGKey`, shape `(2,)` or `(n_models, 2)`).

    Raises:
        TypeError: for anything else, e.g. an integer seed `key=0`, naming `key` and
            saying to pass `jax.random.key(0)` instead.
    """

    def not_a_key(why: str = "") -> TypeError:
        if isinstance(key, (int, float, np.generic)) or np.ndim(key) == 0:
            shown = f"key={key!r}"
        else:
            kind = getattr(key, "dtype", type(key).__name__)
            shown = f"key (dtype {kind}, shape {np.shape(key)})"
        return TypeError(
            f"{shown} is not a JAX random key{why}; pass one made by jax.random.key, "
            "e.g. key=jax.random.key(0) (or jax.random.split(jax.random.key(0), n) for an "
            "ensemble of n models)."
        )

    if isinstance(key, (bool, int, float, complex, np.generic, str, bytes)) or key is None:
        raise not_a_key()
    try:
        key = jnp.asarray(key)
    except TypeError:
        raise not_a_key() from None
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.ndim == 0:
        raise not_a_key()
    try:
        return jax.random.wrap_key_data(key)
    except (TypeError, ValueError):
        raise not_a_key(
            " (raw key data is uint32 of shape (2,), or (n, 2) for n keys)"
        ) from None


def ensemble_size(model) -> int | None:
    """The number of stacked models in an ensemble built with `eqx.filter_vmap`, or None.

    Example:
        >>> nets = eqx.filter_vmap(lambda k: dtp_eqx.DTPNetwork((4, 3, 2), key=k))(
        ...     jax.random.split(jax.random.key(0), 8))
        >>> dtp_eqx.ensemble_size(nets)
        8
    """
    weight = model.forward.weight if isinstance(model, AbstractDTPLayer) else model.output.weight
    return int(weight.shape[0]) if weight.ndim == 3 else None


def ensemble_member(model, i: IntLike):
    """Member `i` of an ensemble (see `ensemble_size`), as an ordinary model.

    Example:
        >>> nets = eqx.filter_vmap(lambda k: dtp_eqx.DTPNetwork((4, 3, 2), key=k))(
        ...     jax.random.split(jax.random.key(0), 8))
        >>> dtp_eqx.ensemble_member(nets, 3).output.weight.shape
        (2, 3)
    """
    n = ensemble_size(model)
    if n is None:
        raise ValueError("model is not an ensemble (its weights have no leading member axis).")
    if not -n <= i < n:
        raise IndexError(f"i={i} is out of range for an ensemble of {n} members.")
    return jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, model)


def _is_autoencoder(model) -> bool:
    return isinstance(model, AbstractDTPLayer)


def _samples(model) -> bool:
    """Whether a forward pass of `model` draws random samples."""
    return any(not s.inference for s in getattr(model, "samplers", ()))
