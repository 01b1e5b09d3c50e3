"""The spec format as dataclasses: one class per section or sub-table, its fields typed and documented.

The validator (``nnctl.spec``), ``nnctl check`` and ``nnctl schema`` all read these classes through
``nnctl.fields.fields_of``, so a key's type, default, range and choices are written once, here.
Keys that name a registered entry (loss, optimizer) carry ``NameOf``; layer keys come from each layer
class's constructor instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from nnctl.fields import Choices, Doc, Fraction, NameOf, NonNegativeFloat, NonNegativeInt, PositiveFloat, \
    PositiveInt, Range, Seed

Scaling = Annotated[str, Choices(("none", "standard", "minmax"))]
Monitor = Annotated[str, Doc("a logged quantity: loss, a metric, or val_ of either")]


def doc(text: str, **kw) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class TopLevel:
    name: str = doc("run name; the default checkpoint is runs/<name>.h5 next to the spec", default="model")
    seed: Seed = doc("seeds the weights, data order, validation split, dropout and augmentation", default=0)
    dtype: Annotated[str, Choices(("float32", "float64"))] = doc("array precision", default="float32")
    data: dict = doc("what to train on", default_factory=dict)
    model: dict = doc("the network", default_factory=dict)
    train: dict = doc("how to train", default_factory=dict)
    output: dict = doc("where results go", default_factory=dict)


KINDS = ("auto", "tabular", "arrays", "idx", "images", "timeseries", "text")


@dataclass(frozen=True)
class DataSection:
    train: str = doc("training file or folder")
    kind: Annotated[str, Choices(KINDS)] = doc("data kind; auto picks from the file extension or folder",
                                               default="auto")
    test: str | None = doc("test file or folder, used by evaluate", default=None)
    validation: str | dict | None = doc("a path, or {split = 0.2, stratify = false} (a number means the split)",
                                        default=None)
    target: str | int | list | None = doc("target column(s), name or index (default: the last column)", default=None)
    features: list | None = doc("CSV input columns (default: every column but the target)", default=None)
    x: str = doc("npz/h5 key of the inputs", default="x")
    y: str = doc("npz/h5 key of the targets", default="y")
    normalize: Scaling = doc("input scaling, statistics from the training split only", default="none")
    normalize_target: Scaling = doc("regression target scaling; predictions come back in original units",
                                    default="none")
    rescale: float | str | None = doc("multiply inputs by this (e.g. 0.00392156862745098 or '1/255')", default=None)
    subset: PositiveInt | None = doc("train on a seeded random subset of this many training samples", default=None)
    image_size: list[PositiveInt] | None = doc("image folders: resize every image to [height, width]", default=None)
    color_mode: Annotated[str, Choices(("auto", "grayscale", "rgb"))] = doc("image folders: channels",
                                                                           default="auto")
    window: PositiveInt | None = doc("time series: input steps per window", default=None)
    horizon: PositiveInt = doc("time series: predict this many steps after the window", default=1)
    stride: PositiveInt = doc("time series: steps between window starts", default=1)
    text: str = doc("text: the column holding the text", default="text")
    tokenizer: dict = doc("text: level, vocab_size, max_length, lowercase, oov_token, padding, truncating",
                          default_factory=dict)
    augment: dict = doc("on-the-fly augmentation of training batches", default_factory=dict)


@dataclass(frozen=True)
class Validation:
    split: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = doc("fraction of the training data",
                                                                          default=0.2)
    stratify: bool = doc("keep class proportions in the split", default=False)
    path: str | None = doc("a validation file instead of a split", default=None)


@dataclass(frozen=True)
class Tokenizer:
    level: Annotated[str, Choices(("word", "char"))] = doc("word or character tokens", default="word")
    vocab_size: Annotated[int, Range(3)] = doc("vocabulary size, counting padding 0 and out-of-vocabulary 1",
                                               default=10000)
    max_length: PositiveInt = doc("tokens per sample after padding or truncation", default=32)
    lowercase: bool = doc("lower-case the text first", default=True)
    oov_token: str = doc("the out-of-vocabulary token", default="<unk>")
    padding: Annotated[str, Choices(("pre", "post"))] = doc("where padding goes", default="post")
    truncating: Annotated[str, Choices(("pre", "post"))] = doc("which end is cut", default="post")


@dataclass(frozen=True)
class Augment:
    flip: Annotated[str, Choices(("horizontal", "vertical", "both"))] | None = doc("images: mirror", default=None)
    rotation: Annotated[float, Range(0, 180)] | None = doc("images: degrees", default=None)
    width_shift: Annotated[float, Range(0, 1, hi_open=True)] | None = doc("images: fraction of width",
                                                                         default=None)
    height_shift: Annotated[float, Range(0, 1, hi_open=True)] | None = doc("images: fraction of height",
                                                                          default=None)
    zoom: Annotated[float, Range(0, 1, hi_open=True)] | None = doc("images: scale in [1 - z, 1 + z]", default=None)
    shear: Annotated[float, Range(0, 90, hi_open=True)] | None = doc("images: shear angle in degrees",
                                                                    default=None)
    fill_mode: Annotated[str, Choices(("nearest", "constant", "reflect", "wrap"))] = doc(
        "images: how points outside the image are filled", default="nearest")
    cval: float = doc("images: the fill value of fill_mode = constant", default=0.0)
    crop_padding: NonNegativeInt | None = doc("images: pad and crop back at a random offset", default=None)
    brightness: NonNegativeFloat | None = doc("images: additive shift, fraction of the batch's range",
                                              default=None)
    contrast: Fraction | None = doc("images: contrast factor in [1 - c, 1 + c]", default=None)
    noise: NonNegativeFloat | None = doc("numeric inputs: Gaussian noise sigma", default=None)
    jitter: NonNegativeFloat | None = doc("sequences: Gaussian noise sigma", default=None)
    scaling: NonNegativeFloat | None = doc("sequences: scale factor sigma", default=None)
    time_warp: Annotated[float, Range(0, 1, hi_open=True)] | None = doc("sequences: speed variation", default=None)
    step_dropout: Annotated[float, Range(0, 1, hi_open=True)] | None = doc("sequences: step drop probability",
                                                                          default=None)
    token_deletion: Annotated[float, Range(0, 1, hi_open=True)] | None = doc("text: token drop probability",
                                                                            default=None)
    token_swap: Fraction | None = doc("text: adjacent swaps per token", default=None)


@dataclass(frozen=True)
class ModelSection:
    layers: list = doc("the layers, in order")
    input_shape: list[PositiveInt] | None = doc("input shape without the batch axis (inferred from the data)",
                                                default=None)
    init_from: str | None = doc("checkpoint whose weights initialise layers of the same name and shape",
                                default=None)
    decode: dict | None = doc("greedy decoding for teacher-forced sequence models at predict time", default=None)
    blocks: dict | None = doc("named blocks {params, defaults, layers}, used in layers as {block = ..., repeat = N}",
                              default=None)


@dataclass(frozen=True)
class Decode:
    source_length: PositiveInt = doc("input steps that are the source sequence")
    start_token: NonNegativeInt = doc("id that starts the decoder input")
    steps: PositiveInt | None = doc("output steps to generate (default: the model's output length)", default=None)


@dataclass(frozen=True)
class TrainSection:
    loss: Annotated[str | dict, NameOf("loss", default_type="mean_squared_error")] = doc(
        "loss name or {type = ..., from_logits = ...}", default="mean_squared_error")
    optimizer: Annotated[str | dict, NameOf("optimizer", default_type="adam")] = doc(
        "optimizer name or {type = ..., learning_rate = ...}", default="adam")
    metrics: list[str] = doc("metrics logged each epoch", default_factory=list)
    epochs: Annotated[int, Range(0, 10**6)] = doc("epochs to train", default=10)
    batch_size: PositiveInt | Annotated[str, Choices(("full",))] = doc("samples per step; 1 = stochastic, 'full' = batch gradient descent",
                                        default=32)
    shuffle: bool = doc("reshuffle the training data every epoch", default=True)
    early_stopping: dict | None = doc("monitor, mode, patience, min_delta, restore_best", default=None)
    lr_schedule: dict | None = doc("type = step|exponential|cosine|plateau and its keys", default=None)
    save_best: bool = doc("also write <checkpoint>.best.h5 with the best epoch", default=False)
    save_every: NonNegativeInt = doc("also write <checkpoint>.epochNNN.h5 every N epochs (0 = never)", default=0)
    tensorboard: str | None = doc("folder for TensorBoard event files", default=None)
    stop_on_nan: bool = doc("stop with exit code 3 on a non-finite loss", default=True)


@dataclass(frozen=True)
class EarlyStopping:
    monitor: Monitor = doc("the quantity watched", default="val_loss")
    mode: Annotated[str, Choices(("auto", "min", "max"))] = doc("direction of improvement", default="auto")
    patience: NonNegativeInt = doc("epochs without improvement before stopping", default=5)
    min_delta: NonNegativeFloat = doc("smallest change that counts as an improvement", default=0.0)
    restore_best: bool = doc("keep the best epoch's weights", default=True)


SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")


@dataclass(frozen=True)
class LrSchedule:
    type: Annotated[str, Choices(SCHEDULES)] = doc("schedule kind", default="constant")
    step_size: PositiveInt = doc("step: epochs per decay", default=10)
    factor: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = doc("step/plateau: multiplier",
                                                                           default=0.5)
    decay_rate: PositiveFloat = doc("exponential: rate per decay_epochs", default=0.9)
    decay_epochs: PositiveFloat = doc("exponential: epochs per decay", default=1.0)
    warmup_epochs: NonNegativeInt = doc("cosine: linear warmup epochs", default=0)
    min_lr: NonNegativeFloat = doc("lowest learning rate", default=0.0)
    monitor: Monitor = doc("plateau: the quantity watched", default="val_loss")
    patience: NonNegativeInt = doc("plateau: epochs without improvement", default=5)
    min_delta: NonNegativeFloat = doc("plateau: smallest improvement", default=0.0)
    cooldown: NonNegativeInt = doc("plateau: epochs to wait after a reduction", default=0)


@dataclass(frozen=True)
class OutputSection:
    checkpoint: str | None = doc("checkpoint path (default runs/<name>.h5)", default=None)
    run_dir: str | None = doc("run folder (default: <checkpoint without .h5>.run)", default=None)


SECTIONS = {"": TopLevel, "data": DataSection, "model": ModelSection, "train": TrainSection,
            "output": OutputSection}
#: sub-tables checked against their own class; ``fill`` says whether defaults are written into the spec
SUBTABLES = {"data.validation": (Validation, True), "data.tokenizer": (Tokenizer, True),
             "data.augment": (Augment, False), "model.decode": (Decode, True),
             "train.early_stopping": (EarlyStopping, True), "train.lr_schedule": (LrSchedule, True)}
