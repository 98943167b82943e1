"""dtp_eqx: difference target propagation (Lee et al., 2015) in Equinox.

Build a `DTPNetwork`, train it with `fit` by difference target propagation (`"dtp"`),
vanilla target propagation (`"tp"`) or back-propagation (`"bp"`), and look inside with
`angles_to_backprop` and `reconstruction_errors`.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._alignment import jacobian_alignment as jacobian_alignment
from ._autoencoder import (
    autoencoder_losses as autoencoder_losses,
    encoder_network as encoder_network,
    linear_probe as linear_probe,
    plot_filters as plot_filters,
    reconstruction_error as reconstruction_error,
)
from ._conv import (
    POOLS as POOLS,
    ConvDTPLayer as ConvDTPLayer,
    FlattenLayer as FlattenLayer,
    ImageLayer as ImageLayer,
    conv_network as conv_network,
)
from ._data import (
    CIFAR10_SOURCES as CIFAR10_SOURCES,
    ChecksumError as ChecksumError,
    Dataset as Dataset,
    cache_dir as cache_dir,
    load_cifar10 as load_cifar10,
    load_fashion_mnist as load_fashion_mnist,
    load_mnist as load_mnist,
)
from ._diagnostics import (
    REFERENCES as REFERENCES,
    activation_spread as activation_spread,
    angle_degrees as angle_degrees,
    angles_to_backprop as angles_to_backprop,
    batch_targets as batch_targets,
    reconstruction_errors as reconstruction_errors,
    target_consistency as target_consistency,
    target_offsets as target_offsets,
    weight_gradient_norms as weight_gradient_norms,
)
from ._checkpoint import (
    CheckpointError as CheckpointError,
    checkpoint_meta as checkpoint_meta,
    load_checkpoint as load_checkpoint,
    save_checkpoint as save_checkpoint,
)
from ._config import (
    BACKPROP_METHODS as BACKPROP_METHODS,
    HYPERPARAMETERS as HYPERPARAMETERS,
    OPTIMIZERS as OPTIMIZERS,
    SCHEDULES as SCHEDULES,
    TRAIN_METHODS as TRAIN_METHODS,
    TrainConfig as TrainConfig,
    make_optimizer as make_optimizer,
    original_rmsprop as original_rmsprop,
)
from ._epoch import (
    data_mesh as data_mesh,
    train_epoch as train_epoch,
    train_inverses as train_inverses,
)
from ._evaluate import (
    evaluate as evaluate,
    sample_probabilities as sample_probabilities,
)
from ._fit import (
    DIVERGENCE_EPOCHS as DIVERGENCE_EPOCHS,
    DIVERGENCE_FACTOR as DIVERGENCE_FACTOR,
    RunInterrupted as RunInterrupted,
    fit as fit,
)
from ._feedback import (
    FEEDBACK_RULES as FEEDBACK_RULES,
    drl_loss as drl_loss,
    feedback_losses as feedback_losses,
    ldrl_loss as ldrl_loss,
)
from ._layers import (
    TiedDTPLayer as TiedDTPLayer,
    TiedLinear as TiedLinear,
    ACTIVATIONS as ACTIVATIONS,
    SIGN_MODES as SIGN_MODES,
    AbstractDTPLayer as AbstractDTPLayer,
    DiscreteDTPLayer as DiscreteDTPLayer,
    DTPLayer as DTPLayer,
    sign as sign,
)
from ._losses import (
    cross_entropy as cross_entropy,
    layer_loss as layer_loss,
    output_loss as output_loss,
    network_reconstruction_losses as network_reconstruction_losses,
    reconstruction_loss as reconstruction_loss,
)
from ._network import (
    UNITS as UNITS,
    DTPNetwork as DTPNetwork,
    continuous as continuous,
    straight_through as straight_through,
    with_sign as with_sign,
)
from ._paper import (
    PAPER_EXPERIMENTS as PAPER_EXPERIMENTS,
    paper_config as paper_config,
    paper_experiment as paper_experiment,
    paper_network as paper_network,
)
from ._reproduce import (
    default_search_ranges as default_search_ranges,
    load_results as load_results,
    reproduce as reproduce,
    results_table as results_table,
    run_command as run_command,
    run_label as run_label,
    run_settings as run_settings,
    search_experiment as search_experiment,
    write_report as write_report,
)
from ._pretrain import (
    finetune as finetune,
    search_autoencoder as search_autoencoder,
)
from ._stochastic import StochasticBinary as StochasticBinary
from ._sweep import (
    best_trial as best_trial,
    default_ranges as default_ranges,
    random_search as random_search,
    sample_hyperparameters as sample_hyperparameters,
)
from ._targets import (
    METHODS as METHODS,
    compute_targets as compute_targets,
    top_step_from_eta as top_step_from_eta,
    top_target as top_target,
)
from ._models import (
    as_key as as_key,
    ensemble_member as ensemble_member,
    ensemble_size as ensemble_size,
)
from ._params import (
    init_opt_state as init_opt_state,
    param_labels as param_labels,
)
from ._step import (
    forward_loss as forward_loss,
    inverse_loss as inverse_loss,
    make_step as make_step,
)

from ._explore import (
    Explorer as Explorer,
    Setting as Setting,
    explore as explore,
    grid_size as grid_size,
)
from ._widgets import (
    prose as prose,
    prose_all as prose_all,
    percent as percent,
    points as points,
    gap_phrase as gap_phrase,
    figure_png as figure_png,
    figure_slider as figure_slider,
    quick_mode as quick_mode,
)

# the names dtp_eqx._train held before the split, for code that reaches them as
# dtp_eqx._train.<name>
from . import _train as _train

try:
    __version__ = _version("dtp-eqx")
except _PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
