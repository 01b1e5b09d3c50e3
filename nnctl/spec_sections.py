"""The spec format as dataclasses: one class per section or sub-table, its fields typed and documented.

The validator (``nnctl.spec``), ``nnctl check`` and ``nnctl schema`` all read these classes through
``nnctl.fields.fields_of``, so a key's type, default, range and choices are written once, here.
Keys that name a registered entry (loss, optimizer) carry ``NameOf``; layer keys come from each layer
class's constructor instead.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from nnctl.augmentations import AugmentSection
from nnctl.augmentations import section as augment_section
from nnctl.data_kinds import KINDS as DATA_KINDS  # noqa: F401 - registers the family NameOf names
from nnctl.fields import (
    Choices,
    Doc,
    FileStem,
    MinItems,
    NameOf,
    NonNegativeFloat,
    NonNegativeInt,
    Path,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
)
from nnctl.schedules import KINDS as SCHEDULE_KINDS
from nnctl.spec_table import Named, Table

Scaling = Annotated[str, Choices(("none", "standard", "minmax"))]
Monitor = Annotated[str, Doc("a logged quantity: loss, a metric, or val_ of either")]


def doc(text: str, **kw) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class TopLevel(Table):
    extends: str | None = doc(
        "a base spec merged under this one (its path relative to this file); tables merge "
        "key by key, this file's values and lists win",
        default=None,
    )
    name: FileStem = doc("run name; the default checkpoint is runs/<name>.h5 next to the spec", default="model")
    seed: Seed = doc("seeds the weights, data order, validation split, dropout and augmentation", default=0)
    dtype: Annotated[str, Choices(("float32", "float64"))] = doc("array precision", default="float32")
    data: dict = doc("what to train on", default_factory=dict)
    model: dict = doc("the network", default_factory=dict)
    train: dict = doc("how to train", default_factory=dict)
    output: dict = doc("where results go", default_factory=dict)
    tune: dict | None = doc("nnctl tune: the search space, objective and budget (ignored by nnctl train)", default=None)


@dataclass(frozen=True)
class DataSection(Table):
    train: Path = doc("training file or folder")
    kind: Annotated[str, NameOf("data kind", tables=False)] = doc(
        "data kind (Keras's loader names such as image_dataset_from_directory are aliases); auto picks from the "
        "file extension or folder",
        default="auto",
    )
    test: Path | None = doc("test file or folder, used by evaluate", default=None)
    validation: str | Validation | None = doc(
        "a path, or {split = 0.2, stratify = false} (a number means the split)", default=None
    )
    target: str | int | list | None = doc(
        "target column(s), name or index (default: the last column); 'input': the preprocessed input itself "
        "(an autoencoder; with data.augment the clean input is the target of the augmented one)",
        default=None,
    )
    features: Annotated[list, MinItems(1)] | None = doc(
        "CSV input columns (default: every column but the target)", default=None
    )
    sample_weight: str | None = doc(
        "per-sample training-loss weights: a CSV column (not a feature) or an "
        "npz/h5 array (a .npy file beside .npy inputs) of N non-negative numbers",
        default=None,
    )
    anomaly_label: str | None = doc(
        "autoencoders: a CSV column (never an input) or npz/h5 key marking true "
        "anomalies 1/0; evaluate reports precision and recall of the flagged rows",
        default=None,
    )
    x: str = doc("npz/h5 key of the inputs", default="x")
    y: str = doc("npz/h5 key of the targets", default="y")
    normalize: Scaling = doc("input scaling, statistics from the training split only", default="none")
    normalize_target: Scaling = doc(
        "regression target scaling; predictions come back in original units", default="none"
    )
    rescale: float | str | None = doc("multiply inputs by this (e.g. 0.00392156862745098 or '1/255')", default=None)
    subset: PositiveInt | None = doc("train on a seeded random subset of this many training samples", default=None)
    image_size: list[PositiveInt] | None = doc("image folders: resize every image to [height, width]", default=None)
    color_mode: Annotated[str, Choices(("auto", "grayscale", "rgb"))] = doc("image folders: channels", default="auto")
    window: PositiveInt | None = doc("time series: input steps per window", default=None)
    horizon: PositiveInt = doc("time series: predict this many steps after the window", default=1)
    stride: PositiveInt = doc("time series: steps between window starts", default=1)
    text: str = doc("text: the column holding the text", default="text")
    tokenizer: Tokenizer = doc(
        "text: level, vocab_size, max_length, lowercase, oov_token, padding, truncating",
        default_factory=lambda: Tokenizer(),
    )
    augment: Augment = doc("on-the-fly augmentation of training batches", default_factory=lambda: Augment())
    categorical: list[str] | dict | None = doc(
        "tabular: category columns, a list (one-hot) or {column = 'onehot' | 'ids'} (default: auto-detected)",
        default=None,
    )
    max_categories: NonNegativeInt = doc(
        "tabular: auto-detect a non-numeric column with at most this many levels as categorical (0 = never)", default=50
    )
    missing: Missing | None = doc(
        "tabular: {strategy, indicator, value, columns = {name = {...}}} for missing cells", default=None
    )
    stream: Annotated[str, Choices(("auto", "memory", "mmap", "batches"))] = doc(
        "arrays: read .npy/HDF5 whole (memory), memory-mapped (.npy) or per batch (HDF5); image folders: "
        "decoded whole (memory) or per batch with the next batch prefetched (batches); auto streams data "
        "over stream_above_mb",
        default="auto",
    )
    stream_above_mb: NonNegativeInt = doc(
        "arrays and image folders: data larger than this (image folders: decoded) stream under stream = auto",
        default=1024,
    )
    shuffle_buffer: NonNegativeInt = doc("HDF5 streaming: rows of the shuffle buffer (0 = chunk order only)", default=0)
    inputs: dict | None = doc(
        "named inputs' data {name = [CSV columns] or 'npz/h5 array'} (default: the array of the input's name)",
        default=None,
    )
    targets: dict | None = doc(
        "named outputs' targets {name = [CSV columns] or 'npz/h5 array'} (default: the array of the output's name)",
        default=None,
    )


@dataclass(frozen=True)
class Validation(Table):
    split: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = doc("fraction of the training data", default=0.2)
    stratify: bool = doc("keep class proportions in the split", default=False)
    path: str | None = doc("a validation file instead of a split", default=None)


MISSING_STRATEGIES = ("error", "mean", "median", "most_frequent", "constant")


@dataclass(frozen=True)
class Missing(Table):
    FILL: ClassVar[bool] = False  # only the keys given are stored
    strategy: Annotated[str, Choices(MISSING_STRATEGIES)] = doc(
        "how a missing cell (empty, NA, N/A, NaN, null, None, ?) is filled; statistics from the training split",
        default="error",
    )
    indicator: bool = doc("add a 0/1 column per filled column saying the cell was missing", default=False)
    value: float | str | None = doc(
        "the fill value of strategy = constant (default 0, or '' for categories)", default=None
    )
    columns: dict = doc(
        "per-column rules {name = {strategy, indicator, value}} over the ones above", default_factory=dict
    )


@dataclass(frozen=True)
class Tokenizer(Table):
    level: Annotated[str, Choices(("word", "char"))] = doc("word or character tokens", default="word")
    vocab_size: Annotated[int, Range(3)] = doc(
        "vocabulary size, counting padding 0 and out-of-vocabulary 1", default=10000
    )
    max_length: PositiveInt = doc("tokens per sample after padding or truncation", default=32)
    lowercase: bool = doc("lower-case the text first", default=True)
    oov_token: str = doc("the out-of-vocabulary token", default="<unk>")
    padding: Annotated[str, Choices(("pre", "post"))] = doc("where padding goes", default="post")
    truncating: Annotated[str, Choices(("pre", "post"))] = doc("which end is cut", default="post")


# [data.augment]: one field per key of each registered augmentation (nnctl/augmentations.py owns them);
# FILL = False: only the keys given are stored
if TYPE_CHECKING:
    Augment = AugmentSection
else:
    Augment = augment_section(bases=(Table,), FILL=False, __module__=__name__)


@dataclass(frozen=True)
class ModelSection(Table):
    layers: list | None = doc("the layers, in order (required, except in a GAN spec)", default=None)
    input_shape: list[PositiveInt] | None = doc(
        "input shape without the batch axis (inferred from the data)", default=None
    )
    init_from: Path | None = doc("checkpoint whose weights initialise layers of the same name and shape", default=None)
    decode: Decode | None = doc("greedy decoding for teacher-forced sequence models at predict time", default=None)
    generator: Generator | None = doc(
        'GAN (train.mode = "gan"): latent_dim, latent and the generator\'s layers', default=None
    )
    discriminator: Discriminator | None = doc(
        'GAN (train.mode = "gan"): the discriminator\'s layers, one score out', default=None
    )
    blocks: dict | None = doc(
        "named blocks {params, defaults, layers}, used in layers as {block = ..., repeat = N}", default=None
    )
    top: list[str] | str | None = doc(
        "the classifier top: names of the last layers, in order, or the name of the "
        "first of them (it and every layer after it)",
        default=None,
    )
    include_top: bool = doc(
        "false: build without model.top's layers (a feature extractor, as Keras's include_top=False)", default=True
    )
    inputs: dict[str, ModelInput] | None = doc(
        "named inputs {name = {shape, dtype}}, referenced by name in a layer's inputs (default: one input, 'input')",
        default=None,
    )
    outputs: dict[str, ModelOutput] | None = doc(
        "named outputs {name = {layer, loss, weight, metrics}}; the loss is the weighted "
        "sum (default: the last layer, train.loss)",
        default=None,
    )


@dataclass(frozen=True)
class ModelInput(Table):
    shape: list[PositiveInt] = doc("the input's shape without the batch axis")
    dtype: Annotated[str, Choices(("float32", "float64", "int32", "int64"))] | None = doc(
        "int64/int32 for ids (an Embedding's input); default: the spec's dtype", default=None
    )


@dataclass(frozen=True)
class ModelOutput(Table):
    layer: str = doc("the layer whose output this is")
    loss: Annotated[Named, NameOf("loss", default_type="mean_squared_error")] = doc(
        "this output's loss: name or {type = ..., ...}", default=Named("mean_squared_error")
    )
    weight: NonNegativeFloat = doc("its weight in the total loss (Keras's loss_weights)", default=1.0)
    metrics: list[str] = doc("metrics of this output, logged as <output>_<metric>", default_factory=list)


@dataclass(frozen=True)
class Decode(Table):
    source_length: PositiveInt = doc("input steps that are the source sequence")
    start_token: NonNegativeInt = doc("id that starts the decoder input")
    steps: PositiveInt | None = doc("output steps to generate (default: the model's output length)", default=None)


@dataclass(frozen=True)
class TrainSection(Table):
    loss: Annotated[Named, NameOf("loss", default_type="mean_squared_error")] = doc(
        "loss name or {type = ..., from_logits = ...}", default=Named("mean_squared_error")
    )
    optimizer: Annotated[Named, NameOf("optimizer", default_type="adam")] = doc(
        "optimizer name or {type = ..., learning_rate = ...}", default=Named("adam")
    )
    metrics: list[str] = doc("metrics logged each epoch", default_factory=list)
    epochs: Annotated[int, Range(0, 10**6)] = doc("epochs to train", default=10)
    batch_size: PositiveInt | Annotated[str, Choices(("full",))] = doc(
        "samples per step; 1 = stochastic, 'full' = batch gradient descent", default=32
    )
    shuffle: bool = doc("reshuffle the training data every epoch", default=True)
    early_stopping: EarlyStopping | None = doc("monitor, mode, patience, min_delta, restore_best", default=None)
    lr_schedule: LrSchedule | None = doc("type = " + "|".join(SCHEDULE_KINDS.names()) + " and its keys", default=None)
    class_weight: Annotated[str, Choices(("balanced",))] | dict | None = doc(
        'loss weight per class: "balanced" (n / (classes * count)) or { label = weight }; training loss only',
        default=None,
    )
    save_best: bool = doc("also write <checkpoint>.best.h5 with the best epoch", default=False)
    save_every: NonNegativeInt = doc("also write <checkpoint>.epochNNN.h5 every N epochs (0 = never)", default=0)
    tensorboard: Path | None = doc("folder for TensorBoard event files", default=None)
    stop_on_nan: bool = doc("stop with exit code 3 on a non-finite loss", default=True)
    gradient_accumulation: PositiveInt = doc(
        "optimizer step every K batches on their row-weighted mean gradient (= batch size K*batch_size)", default=1
    )
    checkpoint_every_steps: NonNegativeInt = doc(
        "also write the checkpoint, mid-epoch, every N optimizer steps (0 = only at epoch ends)", default=0
    )
    checkpoint_on_signal: bool = doc(
        "SIGUSR1 checkpoints at the next batch and exits 143, as SIGTERM does (SLURM --signal=USR1@90)", default=False
    )
    anomaly_quantile: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] | None = doc(
        "autoencoders: when training ends, store this quantile of the training rows' reconstruction errors in "
        "the checkpoint as the anomaly threshold",
        default=None,
    )
    memory_check: bool = doc(
        "refuse, before allocating it, a model whose estimated training memory exceeds "
        "the memory available (train --no-memory-check sets false)",
        default=True,
    )
    mode: Annotated[str, Choices(("supervised", "gan"))] = doc(
        "supervised: one model on (input, target) pairs; gan: model.generator against model.discriminator",
        default="supervised",
    )
    gan: GanTrain | None = doc("GAN: loss, d_steps, g_steps, label_smoothing and the two optimizers", default=None)


@dataclass(frozen=True)
class EarlyStopping(Table):
    monitor: Monitor = doc("the quantity watched", default="val_loss")
    mode: Annotated[str, Choices(("auto", "min", "max"))] = doc("direction of improvement", default="auto")
    patience: NonNegativeInt = doc("epochs without improvement before stopping", default=5)
    min_delta: NonNegativeFloat = doc("smallest change that counts as an improvement", default=0.0)
    restore_best: bool = doc("keep the best epoch's weights", default=True)


Epochs = Annotated[float, Range(0, lo_open=True)]


@dataclass(frozen=True)
class LrSchedule(Table):
    type: Annotated[str, NameOf("schedule", tables=False)] = doc(
        "schedule kind (Keras's and PyTorch's class names are aliases); every kind is evaluated per step",
        default="constant",
    )
    warmup_epochs: NonNegativeFloat = doc(
        "every kind: linear warmup over this many epochs (fractions allowed)", default=0.0
    )
    warmup_steps: NonNegativeInt = doc(
        "every kind: linear warmup over this many steps (instead of warmup_epochs)", default=0
    )
    step_size: PositiveInt = doc("step: epochs per decay", default=10)
    milestones: list[Epochs] | None = doc("multistep: epochs at which the rate is multiplied by factor", default=None)
    factor: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = doc(
        "step/multistep/plateau: multiplier", default=0.5
    )
    decay_rate: PositiveFloat = doc("exponential: rate per decay_epochs", default=0.9)
    decay_epochs: PositiveFloat = doc("exponential: epochs per decay", default=1.0)
    power: PositiveFloat = doc("polynomial: exponent of (1 - t / T)", default=1.0)
    cycle_epochs: Epochs = doc("cosine_restarts: epochs of the first cycle", default=10.0)
    t_mul: Annotated[float, Range(1)] = doc("cosine_restarts: each cycle is this many times longer", default=2.0)
    m_mul: Annotated[float, Range(0, 1, lo_open=True)] = doc(
        "cosine_restarts: each cycle starts this many times lower", default=1.0
    )
    pct_start: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = doc(
        "one_cycle: fraction of the steps spent rising", default=0.3
    )
    div_factor: Annotated[float, Range(1)] = doc("one_cycle: starts at learning_rate / div_factor", default=25.0)
    final_div_factor: Annotated[float, Range(1)] = doc(
        "one_cycle: ends at the start rate / final_div_factor", default=1e4
    )
    min_lr: NonNegativeFloat = doc("lowest learning rate (cosine, polynomial, cosine_restarts, plateau)", default=0.0)
    monitor: Monitor = doc("plateau: the quantity watched", default="val_loss")
    patience: NonNegativeInt = doc("plateau: epochs without improvement", default=5)
    min_delta: NonNegativeFloat = doc("plateau: smallest improvement", default=0.0)
    cooldown: NonNegativeInt = doc("plateau: epochs to wait after a reduction", default=0)


@dataclass(frozen=True)
class Generator(Table):
    layers: list = doc("the generator's layers: latent vector in, one sample (the data's shape) out")
    latent_dim: PositiveInt = doc("size of the latent vector z the generator maps to a sample", default=100)
    latent: Annotated[str, Choices(("normal", "uniform"))] = doc(
        "distribution of z: normal N(0, 1) or uniform U(-1, 1)", default="normal"
    )
    classes: PositiveInt | None = doc(
        "conditional GAN: the number of classes (labels 0..classes-1); the label goes into G as a one-hot vector "
        "beside z and into D as one-hot channels beside the sample",
        default=None,
    )


@dataclass(frozen=True)
class Discriminator(Table):
    layers: list = doc("the discriminator's layers: one sample in, one score (a logit, or sigmoid) out")


@dataclass(frozen=True)
class GanTrain(Table):
    loss: Annotated[str, Choices(("non_saturating", "hinge", "wgan_gp"))] = doc(
        "non_saturating: D minimises BCE, G minimises -log D(G(z)); hinge: D relu(1 - s_real) + relu(1 + s_fake), "
        "G -s_fake; wgan_gp: D s_fake - s_real + gradient_penalty (||grad_x D(x_hat)|| - 1)^2, G -s_fake",
        default="non_saturating",
    )
    gradient_penalty: Annotated[float, Range(0)] = doc(
        "wgan_gp: the penalty weight lambda (Gulrajani et al. 2017 use 10)", default=10.0
    )
    d_steps: PositiveInt = doc("discriminator steps (each on its own real batch) before the generator steps", default=1)
    g_steps: PositiveInt = doc("generator steps after each round of d_steps discriminator steps", default=1)
    label_smoothing: Annotated[float, Range(0, 0.5, hi_open=True)] = doc(
        "one-sided: real samples get the target 1 - label_smoothing (non_saturating only)", default=0.0
    )
    generator_optimizer: Annotated[Named, NameOf("optimizer", default_type="adam")] = doc(
        "the generator's optimizer: name or {type = ..., learning_rate = ...}", default=Named("adam")
    )
    discriminator_optimizer: Annotated[Named, NameOf("optimizer", default_type="adam")] = doc(
        "the discriminator's optimizer: name or {type = ..., learning_rate = ...}", default=Named("adam")
    )


@dataclass(frozen=True)
class OutputSection(Table):
    checkpoint: Path | None = doc("checkpoint path (default runs/<name>.h5)", default=None)
    run_dir: Path | None = doc("run folder (default: <checkpoint without .h5>.run)", default=None)


TUNE_SAMPLERS = ("random", "grid", "tpe")


@dataclass(frozen=True)
class TuneSection(Table):
    space: dict = doc(
        'search space: {"dotted.path" = {log_uniform | uniform | int = [lo, hi]} or '
        "{choice = [...]}}; a path is what --set takes (model.layers[0].units)"
    )
    objective: Monitor = doc(
        "the logged quantity each trial is scored by, at its checkpoint's epoch", default="val_loss"
    )
    mode: Annotated[str, Choices(("auto", "min", "max"))] = doc(
        "minimise or maximise the objective (auto: max for accuracy-like metrics)", default="auto"
    )
    trials: PositiveInt | None = doc("trials to run (default 20; grid: the whole grid)", default=None)
    epochs: PositiveInt | None = doc("epochs per trial (default train.epochs)", default=None)
    time_limit: NonNegativeFloat = doc("seconds after which no new trial starts (0 = no limit)", default=0.0)
    sampler: Annotated[str, Choices(TUNE_SAMPLERS)] = doc(
        "random and grid built in; tpe needs optuna (pip install nnctl[tune])", default="random"
    )
    pruner: Annotated[str, Choices(("none", "median"))] = doc(
        "median: stop a trial whose objective at an epoch is worse than the median of earlier trials there",
        default="none",
    )
    startup_trials: NonNegativeInt = doc("median pruner and tpe: trials finished before either acts", default=5)
    seed: Seed | None = doc(
        "seeds the sampler (default: the spec's seed); every trial trains with the spec's seed", default=None
    )
    parallel: PositiveInt = doc("trials at a time, each in its own process (--parallel)", default=1)


@dataclass(frozen=True)
class TuneParam(Table):
    log_uniform: list[float] | None = doc("[lo, hi], 0 < lo < hi: sampled uniformly in log space", default=None)
    uniform: list[float] | None = doc("[lo, hi], lo < hi: sampled uniformly", default=None)
    int: list[builtins.int] | None = doc("[lo, hi], lo < hi: an integer, both ends included", default=None)
    choice: list | None = doc("the values to choose from (any spec values)", default=None)
    log: bool = doc("int: sample in log space", default=False)
    grid: PositiveInt | None = doc(
        "grid sampler: points of a range (log-spaced for log_uniform; an int range without it is enumerated)",
        default=None,
    )


SECTIONS = {
    "": TopLevel,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "output": OutputSection,
    "tune": TuneSection,
}
#: sub-tables checked against their own class, in the order their problems are reported; ``fill`` (the class's
#: ``FILL``) says whether defaults are written into the spec. Each is a field annotated with its class.
SUBTABLES: dict[str, tuple[type, bool]] = {
    path: (cls, getattr(cls, "FILL", True))
    for path, cls in (
        ("data.validation", Validation),
        ("data.tokenizer", Tokenizer),
        ("data.missing", Missing),
        ("data.augment", Augment),
        ("model.decode", Decode),
        ("train.early_stopping", EarlyStopping),
        ("train.lr_schedule", LrSchedule),
        ("model.generator", Generator),
        ("model.discriminator", Discriminator),
        ("train.gan", GanTrain),
    )
}
