"""Run by tests/test_train.py in a fresh process with 8 CPU devices: data-parallel `fit`
over a mesh must match the single-device run, and really split the minibatch."""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

import dtp_eqx  # noqa: E402
from dtp_eqx import _train  # noqa: E402
from helpers import toy_data, tree_allclose  # noqa: E402

assert jax.device_count() == 8, jax.devices()
mesh = dtp_eqx.data_mesh()
data = toy_data(jax.random.key(0), n=400, n_in=8, n_classes=3, n_valid=80, n_test=80)
config = dtp_eqx.TrainConfig(epochs=2, batch_size=80, top_step=0.05)
for units, activation in (("continuous", "tanh"), ("bernoulli", "sigmoid")):
    net = dtp_eqx.DTPNetwork(
        (8, 16, 16, 16, 3), units=units, activation=activation, key=jax.random.key(1)
    )
    one, one_history = dtp_eqx.fit(net, data, config, key=jax.random.key(2), progress=False)
    sharded, history = dtp_eqx.fit(
        net, data, config, key=jax.random.key(2), progress=False, mesh=mesh
    )
    assert len(sharded.output.weight.sharding.device_set) == 8
    assert tree_allclose(one, sharded, rtol=1e-5, atol=1e-6), units
    np.testing.assert_allclose(history["train_loss"], one_history["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(history["test_error"], one_history["test_error"], atol=1e-6)
    print(f"{units}: sharded run matches one device")

# the compiled epoch splits each minibatch: its gradients are summed across devices
x, y = _train.check_arrays(net, data.x_train, data.y_train, "train")
opt_state = dtp_eqx.init_opt_state(net, config)
args = _train._replicate((net, opt_state, x, y), mesh, config.batch_size)
hyper = {k: np.float32(v) for k, v in config.hyperparameters().items() if k != "sigma"}
text = _train._train_epoch.lower(
    *args, jax.random.key(3), np.float32(0.1), hyper, config, "forward", mesh
).compile().compiled.as_text()
assert "all-reduce" in text, "no cross-device reduction: the batch was not split"
print("compiled epoch has", text.count("all-reduce"), "all-reduce ops")
