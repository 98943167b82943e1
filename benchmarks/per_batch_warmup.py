"""Why the per-batch schedule did not learn: the same 3 seeds of the paper's deep tanh
network (full MNIST, the original settings), with and without an inverse warm-up pass.

    python benchmarks/per_batch_warmup.py [--epochs 2]

Prints the test error of every seed after each epoch for four variants: per-batch with
no warm-up (the schedule before the fix), per-batch with one inverse-only pass first
(`TrainConfig.inverse_warmup=1`, the default now), per-batch with a third of the forward
learning rate and no warm-up, and the original alternate-epoch schedule. Results are
recorded in `benchmarks/results/per-batch-schedule.md`.
"""

import argparse
import time

import equinox as eqx
import jax
import numpy as np

import dtp_eqx

ORIGINAL = dtp_eqx.paper_config("mnist-deep", "dtp")
VARIANTS = {
    "per-batch, no warm-up": dict(schedule="per-batch", inverse_warmup=0),
    "per-batch, 1 inverse warm-up pass": dict(schedule="per-batch", inverse_warmup=1),
    "per-batch, no warm-up, lr_forward / 3": dict(
        schedule="per-batch", inverse_warmup=0, lr_forward=ORIGINAL.lr_forward / 3),
    "alternate-epoch": dict(schedule="alternate-epoch"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data = dtp_eqx.load_mnist()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; test error per seed")
    for name, changes in VARIANTS.items():
        config = dtp_eqx.paper_config("mnist-deep", "dtp", epochs=args.epochs, **changes)
        nets = eqx.filter_vmap(lambda k: dtp_eqx.paper_network("mnist-deep", key=k))(
            jax.random.split(jax.random.key(0), args.seeds))
        start = time.perf_counter()
        _, history = dtp_eqx.fit(nets, data, config, progress=False,
                                 key=jax.random.split(jax.random.key(1), args.seeds))
        errors = np.round(100 * np.asarray(history["test_error"]), 2).tolist()
        loss = np.round(np.asarray(history["train_loss"][-1]), 2).tolist()
        print(f"{name}: test error (%) by epoch {errors}; last training loss {loss}; "
              f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
