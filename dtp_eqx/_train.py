"""Compatibility module: the names `dtp_eqx._train` held before the library was split by
concern, re-exported from where they now live. New code imports from those modules.

- `dtp_eqx._config`: the type aliases `Keys`, `IntLike`, `FloatLike`, `Scalar`; the
  names `TRAIN_METHODS`, `BACKPROP_METHODS`, `SCHEDULES`, `OPTIMIZERS`,
  `HYPERPARAMETERS`, `PHASES`; `original_rmsprop`, `make_optimizer`, the validators
  `_is_int`, `_is_real`, `check_positive_int`; and `TrainConfig`.
- `dtp_eqx._params`: `param_labels`, `_spec`, `init_opt_state`.
- `dtp_eqx._models`: `as_key`, `ensemble_size`, `ensemble_member`, `_is_autoencoder`,
  `_samples`.
- `dtp_eqx._step`: `training_activations`, `forward_loss`, `inverse_loss`, `_update`,
  `make_step` (and its parts `_feedback_update`, `_forward_update`,
  `_autoencoder_step`).
- `dtp_eqx._epoch`: `_epoch_impl`, the compiled `_train_epoch`, `_train_epoch_ensemble`,
  `_train_epoch_one` (`_one_member_epoch`), `train_epoch`, `train_inverses`,
  `check_hyper`, `_member_values`, `data_mesh`, `_replicate`.
- `dtp_eqx._evaluate`: `_eval_impl`, `_eval_batch`, `_eval_batch_ensemble`, `evaluate`,
  `sample_probabilities`, `_sample_probabilities`.
- `dtp_eqx._checks`: `check_input_scale`, `check_labels`, `check_arrays`, and the
  frame helpers `_module`, `_unwrap`, `_called_from_package`, `_user_stacklevel`.

Patch a private name in the module that uses it (e.g. `dtp_eqx._epoch` for the
programs `train_epoch` picks): rebinding it here changes nothing.
"""

from __future__ import annotations

from ._checks import (  # noqa: F401
    _WRAPPERS,
    _called_from_package,
    _module,
    _unwrap,
    _user_stacklevel,
    check_arrays,
    check_input_scale,
    check_labels,
)
from ._config import (  # noqa: F401
    BACKPROP_METHODS,
    HYPERPARAMETERS,
    OPTIMIZERS,
    PHASES,
    SCHEDULES,
    TRAIN_METHODS,
    FloatLike,
    IntLike,
    Keys,
    Scalar,
    TrainConfig,
    _is_int,
    _is_real,
    check_positive_int,
    make_optimizer,
    original_rmsprop,
)
from ._epoch import (  # noqa: F401
    _epoch_impl,
    _member_values,
    _one_member_epoch,
    _replicate,
    _train_epoch,
    _train_epoch_ensemble,
    _train_epoch_one,
    check_hyper,
    data_mesh,
    train_epoch,
    train_inverses,
)
from ._evaluate import (  # noqa: F401
    _eval_batch,
    _eval_batch_ensemble,
    _eval_impl,
    _sample_probabilities,
    evaluate,
    sample_probabilities,
)
from ._models import (  # noqa: F401
    _is_autoencoder,
    _samples,
    as_key,
    ensemble_member,
    ensemble_size,
)
from ._params import _spec, init_opt_state, param_labels  # noqa: F401
from ._step import (  # noqa: F401
    _batch_mean,
    _update,
    forward_loss,
    inverse_loss,
    make_step,
    training_activations,
)
