import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import dtp_eqx


def tree_allclose(a, b, *, rtol=1e-5, atol=1e-6) -> bool:
    """True when two pytrees have the same structure and all arrays are close."""
    return bool(eqx.tree_equal(a, b, typematch=True, rtol=rtol, atol=atol))


def toy_data(key, *, n=600, n_in=8, n_classes=3, n_valid=0, n_test=0) -> dtp_eqx.Dataset:
    """A small separable classification problem: labels from a random linear map."""
    kx, kw = jax.random.split(key)
    x = jax.random.uniform(kx, (n + n_valid + n_test, n_in))
    w = jax.random.normal(kw, (n_in, n_classes))
    y = jnp.argmax((x - 0.5) @ w, axis=-1)
    x, y = np.asarray(x), np.asarray(y, np.int32)
    parts = np.split(np.arange(len(x)), [n, n + n_valid])
    splits = [(x[p], y[p]) if len(p) else (None, None) for p in parts]
    return dtp_eqx.Dataset(
        x_train=splits[0][0], y_train=splits[0][1],
        x_valid=splits[1][0], y_valid=splits[1][1],
        x_test=splits[2][0], y_test=splits[2][1],
        n_classes=n_classes,
    )
