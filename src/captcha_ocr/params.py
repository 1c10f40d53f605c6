"""The one schema for params.yaml: typed, frozen, validated once when loaded.

Every stage calls `load_params` before doing any work, so a misspelt key or an
out-of-range value stops the pipeline at once with the dotted key as written in
params.yaml (`train.learning_rate: Input should be greater than 0`).
"""

from __future__ import annotations

import json
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from captcha_ocr import charsets
from captcha_ocr.images import DEFAULT_MAX_PIXELS

# The longest label anything here generates or imports: a CTC model needs about
# twice as many time steps as characters, and 32 already needs an input 520 px wide.
MAX_LABEL_LENGTH = 32
# Seeds go to NumPy and TensorFlow, which take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
# The metrics an epoch's logs hold, which the callbacks can watch.
Monitor = Literal["loss", "val_loss", "val_sequence_accuracy", "val_character_accuracy"]


class ParamsError(ValueError):
    """params.yaml is missing, unreadable, or does not match the schema."""


def _allows_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    return any(_allows_bool(inner) for inner in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, bool)


class Section(BaseModel):
    # frozen: a stage cannot quietly change a knob after it was logged.
    # extra="forbid": a typo is an error, not a silently ignored key.
    # allow_inf_nan=False: .inf or .nan is never a setting; it trains to NaN.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, raw: Any) -> Any:
        # Pydantic reads `epochs: true` as 1; YAML's true where a number belongs is a slip.
        if isinstance(raw, dict):
            for name, field in cls.model_fields.items():
                value = raw.get(field.alias or name)
                if _holds_bool(value) and not _allows_bool(field.annotation):
                    raise ValueError(f"{field.alias or name}: {value!r} is not a number")
        return raw


class SplitCounts(Section):
    # Upper bounds: a typo of a few zeros should not fill the disk for hours.
    train: int = Field(80_000, ge=1, le=10_000_000)
    val: int = Field(2_000, ge=1, le=1_000_000)
    test: int = Field(5_000, ge=1, le=1_000_000)


class OversampleParams(Section):
    """Symbols the train split draws `factor` times as often as the others, and
    how often its characters repeat the one before them (`doubled`).

    Symbols are one string, not a mapping keyed by symbol: `{0: 4, O: 4}` has an
    int and a str key, which DVC cannot hash (it sorts params keys), and `dvc exp
    run -S` cannot quote a key to make it text. Whether they are in the charset is
    checked by Params, which knows the charset.
    """

    symbols: str = Field("", description="e.g. 0O; empty = off")
    factor: float = Field(4.0, gt=0, le=1000)
    doubled: float = Field(
        0.1,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="chance each character after the first repeats the one before it",
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # YAML reads 10 as a number and 01 as 1; guessing the symbols meant is unsafe.
        if not isinstance(value, str):
            raise ValueError(f"write the symbols as quoted text, e.g. '10', got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> OversampleParams:
        repeated = sorted({s for s in self.symbols if self.symbols.count(s) > 1})
        if repeated:
            raise ValueError(f"symbols: {repeated} given more than once")
        return self


Range = tuple[float, float]


def _check_widths(name: str, widths: tuple[int, ...]) -> None:
    """Layer widths: one entry per layer, each 1..4096 (far past what a CPU trains)."""
    if not widths or len(widths) > 16 or not all(1 <= width <= 4096 for width in widths):
        raise ValueError(f"{name}: needs 1 to 16 entries, each 1..4096")


def _check_range(name: str, value: tuple[float, float]) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{name}: the first bound must not exceed the second ({list(value)})")


class DataParams(Section):
    """What every sample is, whichever its source."""

    source: Literal["generated", "imported", "mixed"] = Field(
        "generated", description="generated captchas, your own (import), or both"
    )
    charset: str = Field(
        "digits_upper", description=f"a preset ({', '.join(charsets.PRESETS)}) or `custom`"
    )
    custom_charset: str | None = Field(
        None, description="the symbols themselves, used when charset is `custom`"
    )
    seed: int = Field(
        42, ge=0, le=MAX_SEED, description="draws the generated captchas and splits imported ones"
    )

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        try:
            charsets.resolve(self.charset, self.custom_charset)
        except ValueError as error:
            field = "custom_charset" if self.charset == charsets.CUSTOM else "charset"
            raise ValueError(f"{field}: {error}") from None
        return self

    @property
    def symbols(self) -> str:
        return charsets.resolve(self.charset, self.custom_charset)

    @property
    def uses_generated(self) -> bool:
        return self.source in ("generated", "mixed")

    @property
    def uses_imported(self) -> bool:
        return self.source in ("imported", "mixed")


class GenerateParams(Section):
    """Synthetic captchas from the `captcha` package; its drawing knobs are exposed."""

    min_length: int = Field(4, ge=1, le=MAX_LABEL_LENGTH)
    max_length: int = Field(4, ge=1, le=MAX_LABEL_LENGTH)
    # Only the train split: a model trained on one length reads others badly
    # (README, Data: "Lengths"); val and test keep min..max, the task being scored.
    train_lengths: tuple[int, int] | None = Field(
        (3, 6), description="[shortest, longest] of the train split; null = min..max"
    )
    image_width: int = Field(160, ge=16, le=1024)
    image_height: int = Field(60, ge=16, le=512)
    fonts: tuple[str, ...] = Field(
        ("DroidSansMono",),
        description="names (DroidSansMono, or a DejaVu/STIX font matplotlib ships) or .ttf paths",
    )
    font_sizes: tuple[int, ...] = Field((42, 50, 56), description="px, each 4..512")
    rotation: Range = Field((-30.0, 30.0), description="degrees, per character")
    # As captcha 0.7.1 uses them (README, Data): corners move by up to
    # (hi - lo) * size + lo pixels, and the margins are cropped away with the glyph.
    warp_x: Range = Field((0.1, 0.3), description="horizontal warp range, see README")
    warp_y: Range = Field((0.2, 0.3), description="vertical warp range, see README")
    offset_x: tuple[int, int] = Field((0, 4), description="left margin, px: no effect")
    offset_y: tuple[int, int] = Field((0, 6), description="top margin, px: no effect")
    space_probability: float = Field(
        0.5, ge=0.0, le=1.0, description="chance of a gap before a glyph"
    )
    overlap: float = Field(0.25, ge=0.0, lt=1.0, description="glyphs overlap up to this share")
    noise_dots: int = Field(30, ge=0, le=10_000)
    noise_dot_width: int = Field(3, ge=1, le=64)
    noise_curves: int = Field(1, ge=0, le=100)
    oversample: OversampleParams = OversampleParams()
    splits: SplitCounts = SplitCounts()
    workers: int = Field(0, ge=0, le=256, description="processes; 0 = all cores")

    @model_validator(mode="after")
    def _check(self) -> GenerateParams:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length: must be >= min_length ({self.min_length})")
        if self.train_lengths is not None:
            shortest, longest = self.train_lengths
            if not 1 <= shortest <= longest <= MAX_LABEL_LENGTH:
                raise ValueError(
                    f"train_lengths: needs 1 <= shortest <= longest <= {MAX_LABEL_LENGTH}, got "
                    f"{list(self.train_lengths)}"
                )
            if shortest > self.min_length or longest < self.max_length:
                # Training that never sees the scored lengths would fail them all.
                raise ValueError(
                    f"train_lengths: {list(self.train_lengths)} must take in the lengths "
                    f"min_length..max_length ({self.min_length}-{self.max_length}); "
                    "widen it, or null to train on those alone"
                )
        if not self.fonts:
            raise ValueError("fonts: needs at least one font")
        if not self.font_sizes or not all(4 <= size <= 512 for size in self.font_sizes):
            raise ValueError("font_sizes: needs at least one size, each 4..512")
        for name in ("rotation", "warp_x", "warp_y", "offset_x", "offset_y"):
            _check_range(name, getattr(self, name))
        if max(map(abs, self.rotation)) > 180:
            raise ValueError("rotation: degrees must lie in -180..180")
        for name in ("warp_x", "warp_y"):
            if not all(0 <= bound <= 1 for bound in getattr(self, name)):
                raise ValueError(f"{name}: bounds must lie in 0..1")
        for name, size in (("offset_x", self.image_width), ("offset_y", self.image_height)):
            if not all(0 <= bound <= size for bound in getattr(self, name)):
                raise ValueError(f"{name}: offsets must lie in 0..{size} (the image's size)")
        return self

    def lengths(self, split: str) -> tuple[int, int]:
        """[shortest, longest] label of a generated split."""
        if split == "train" and self.train_lengths is not None:
            return self.train_lengths
        return self.min_length, self.max_length

    @property
    def varies_in_length(self) -> bool:
        return self.max_length > self.min_length or self.lengths("train") != self.lengths("test")


class ImportParams(Section):
    """Your own labelled captchas: a folder, labels in the file names or in a CSV."""

    path: str = Field("captchas", description="folder of images, relative to the project")
    labels: Literal["filename", "csv"] = Field(
        "filename", description="filename: <label>.png or <label>_<n>.png; csv: see `csv`"
    )
    csv: str | None = Field(None, description="with labels: csv, a CSV of file,label rows")
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="fail: report every bad file and stop; skip: leave them out"
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        le=100_000_000,
        description="a larger image is refused from its header, before it is decoded "
        "(import, read and the served reader)",
    )
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> ImportParams:
        if self.labels == "csv" and not self.csv:
            raise ValueError("csv: labels: csv needs the path of the CSV")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("test_fraction: val_fraction + test_fraction must leave training data")
        return self


class TFRecordParams(Section):
    shard_size: int = Field(5_000, ge=1, le=1_000_000, description="examples per shard")
    compression: Literal["none", "gzip"] = "none"


class CRNNParams(Section):
    """Conv blocks read left to right as a sequence, then bidirectional RNNs and CTC."""

    stem_filters: int = Field(
        0,
        ge=0,
        le=4096,
        description="a stride-2 3x3 conv before the blocks: learned downsampling; 0 = none",
    )
    conv_filters: tuple[int, ...] = (16, 32, 64, 64)
    # 3x3 convs per block: one number for every block, or one entry per block.
    # Depth tells 0 from O better than width at equal cost (bench/glyph_separability.py).
    convs_per_block: int | tuple[int, ...] = 1
    # Pooling along the width sets the number of CTC time steps; see models/crnn.py.
    pool_widths: tuple[int, ...] = (2, 2, 2, 1)
    # Depthwise-separable 3x3 convs wherever a conv reads more than one channel (with
    # grayscale input, every conv but the first): fewer multiply-adds per pixel, but
    # less accurate in the default's time (bench/README.md).
    separable: bool = False
    rnn: Literal["gru", "lstm"] = "gru"
    rnn_units: tuple[int, ...] = (128, 64)
    # Each time step's features (rows left x filters: 2 x 64 at the default's 32 rows)
    # are projected to this many before the RNNs; 128 keeps them all, and read more
    # test captchas than 64 at each of three seeds, 0.4 points on average (bench/README.md).
    dense_units: int = Field(128, ge=1, le=65_536)
    dropout: float = Field(0.25, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> CRNNParams:
        _check_widths("conv_filters", self.conv_filters)
        if len(self.pool_widths) != len(self.conv_filters):
            raise ValueError("pool_widths: needs one entry per conv_filters entry")
        if len(self.block_convs) != len(self.conv_filters):
            raise ValueError("convs_per_block: needs one entry per conv_filters entry")
        if any(convs < 1 for convs in self.block_convs):
            raise ValueError("convs_per_block: must be >= 1")
        if any(width not in (1, 2) for width in self.pool_widths):
            raise ValueError("pool_widths: entries must be 1 or 2")
        if any(convs > 16 for convs in self.block_convs):
            raise ValueError("convs_per_block: at most 16")
        _check_widths("rnn_units", self.rnn_units)
        return self

    def time_steps(self, input_width: int) -> int:
        """The CTC time steps an input this wide leaves: the stem and the width pools
        each divide it."""
        steps = input_width // 2 if self.stem_filters else input_width
        for pool_width in self.pool_widths:
            steps //= pool_width
        return steps

    def check_fits(self, width: int, height: int, longest: int) -> None:
        """Refuse an input CTC cannot train on: a repeated character needs a blank
        between its copies, so L characters need up to 2L + 1 time steps; and each
        block halves the height. Checked with the params (generated lengths) and
        again when the model is built (imported ones)."""
        steps, needed = self.time_steps(width), 2 * longest + 1
        if steps < needed:
            raise ValueError(
                f"model.crnn_ctc.pool_widths: {list(self.pool_widths)} leaves {steps} time "
                f"steps for input width {width}, but labels of {longest} characters need at "
                f"least {needed}; pool less along the width or widen the input"
            )
        if height >> (len(self.conv_filters) + bool(self.stem_filters)) < 1:
            raise ValueError(
                f"model.crnn_ctc.conv_filters: {len(self.conv_filters)} blocks each halve the "
                f"height, too many for input height {height}"
            )

    @property
    def block_convs(self) -> tuple[int, ...]:
        """convs_per_block with one entry per block."""
        if isinstance(self.convs_per_block, int):
            return (self.convs_per_block,) * len(self.conv_filters)
        return self.convs_per_block


class CNNMultiheadParams(Section):
    """Blocks of 3x3 convolutions (+ BatchNorm) and max-pooling, then a head per position."""

    conv_filters: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_block: int = Field(2, ge=1, le=16)
    dense_units: int = Field(
        256, ge=0, le=65_536, description="0: the heads read the flattened map"
    )
    dropout: float = Field(0.25, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> CNNMultiheadParams:
        _check_widths("conv_filters", self.conv_filters)
        return self


class VGGMultiheadParams(Section):
    width: float = Field(0.25, gt=0.0, le=1.0, description="share of VGG16's filters and fc units")
    batch_norm: bool = True
    dropout: float = Field(0.5, ge=0.0, lt=1.0)


class ResNet50MultiheadParams(Section):
    weights: str | None = Field(None, description="a local weights file; None: random init")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


# One softmax head per character position: one label length only.
MULTIHEAD_ARCHS = ("cnn_multihead", "vgg_multihead", "resnet50_multihead")


class ModelParams(Section):
    arch: Literal["crnn_ctc", "cnn_multihead", "vgg_multihead", "resnet50_multihead"] = "crnn_ctc"
    # The input every architecture sees; images are resized to it when read.
    input_width: int | None = Field(128, ge=16, le=2048, description="None: the data's width")
    input_height: int | None = Field(32, ge=16, le=2048, description="None: the data's height")
    channels: Literal[1, 3] = Field(1, description="1 = grayscale")
    crnn_ctc: CRNNParams = CRNNParams()
    cnn_multihead: CNNMultiheadParams = CNNMultiheadParams()
    vgg_multihead: VGGMultiheadParams = VGGMultiheadParams()
    resnet50_multihead: ResNet50MultiheadParams = ResNet50MultiheadParams()


class EarlyStoppingParams(Section):
    enabled: bool = True
    monitor: Monitor = "val_loss"
    patience: int = Field(3, ge=0, le=10_000)
    min_delta: float = Field(0.0, ge=0.0, le=10.0)
    restore_best_weights: bool = True


class ReduceLROnPlateauParams(Section):
    enabled: bool = True
    monitor: Monitor = "val_loss"
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(2, ge=0, le=10_000)
    min_lr: float = Field(1.0e-5, ge=0.0)


class CheckpointParams(Section):
    monitor: Monitor = "val_loss"


class AugmentParams(Section):
    """Random changes to training images; 0 turns a knob off."""

    # On by default: the generator centres every glyph vertically, and a model trained
    # without shifts reads a captcha drawn 3 px lower badly (bench/generalization.py).
    translate: float = Field(
        0.06, ge=0.0, lt=0.5, description="shift, share of height and width (whole pixels)"
    )
    rotate: float = Field(0.0, ge=0.0, le=45.0, description="degrees either way")
    zoom: float = Field(0.0, ge=0.0, lt=0.5, description="share in or out")
    noise: float = Field(0.0, ge=0.0, le=0.5, description="Gaussian pixel noise, std on [0, 1]")


# train.distribute: multi_worker reads its cluster where TensorFlow does.
TF_CONFIG = "TF_CONFIG"


@dataclass(frozen=True)
class Role:
    """This process's place in a TF_CONFIG cluster."""

    index: int  # the process's number: the chief task first, then the workers
    workers: int  # processes that train: the chief and the workers

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_role(text: str | None) -> Role:
    """Parse TF_CONFIG; ValueError says, in words, what is wrong with it."""
    if not text:
        raise ValueError(f"{TF_CONFIG} is not set")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG} is not JSON ({error.msg})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(f'{TF_CONFIG} has no "cluster" and "task" objects')
    members: dict[str, list[str]] = {}
    for kind in ("chief", "worker"):
        addresses = cluster.get(kind, [])
        if not isinstance(addresses, list) or not all(
            isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses
        ):
            raise ValueError(f'{TF_CONFIG}\'s cluster "{kind}" is not a list of "host:port"')
        members[kind] = addresses
    if len(members["chief"]) > 1:
        raise ValueError(f"{TF_CONFIG}'s cluster has more than one chief")
    workers = len(members["chief"]) + len(members["worker"])
    if workers < 2:
        raise ValueError(f"{TF_CONFIG}'s cluster names {workers} process; it takes 2 or more")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in ("chief", "worker"):
        raise ValueError(f'{TF_CONFIG}\'s task "type" is neither "chief" nor "worker"')
    if not isinstance(index, int) or not 0 <= index < len(members[task_type]):
        raise ValueError(
            f'{TF_CONFIG}\'s task "index" {index!r} is not one of its '
            f"{len(members[task_type])} {task_type} addresses"
        )
    if task_type == "worker" and members["chief"]:
        index += 1
    return Role(index, workers)


class TrainParams(Section):
    seed: int = Field(1234, ge=0, le=MAX_SEED)
    deterministic: bool = Field(
        True,
        description="TensorFlow op determinism: the same params, data and machine train "
        "the same weights run after run",
    )
    epochs: int = Field(4, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    min_steps_per_epoch: int = Field(
        600,
        ge=0,
        le=10_000_000,
        description="an epoch goes through a smaller training split several times, to make "
        "at least this many optimizer steps (a small set of one's own captchas); 0 = once",
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(2.0e-3, gt=0.0, le=10.0, description="the peak rate with warmup")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="constant or cosine decay to 1%; ReduceLROnPlateau lowers either"
    )
    warmup_epochs: float = Field(0.3, ge=0.0, description="linear warmup, cosine schedule only")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="adamw only")
    clipnorm: float | None = Field(None, gt=0.0, le=1000.0)
    shuffle_buffer: int = Field(10_000, ge=1, le=10_000_000)
    cache: bool = Field(True, description="keep decoded images in memory after epoch 1")
    resume: bool = Field(True, description="continue an interrupted run from its last epoch")
    augment: AugmentParams = AugmentParams()
    early_stopping: EarlyStoppingParams = EarlyStoppingParams()
    reduce_lr: ReduceLROnPlateauParams = ReduceLROnPlateauParams()
    checkpoint: CheckpointParams = CheckpointParams()
    distribute: Literal["none", "mirrored", "multi_worker"] = Field(
        "none",
        description="none: one device; mirrored: one host's GPUs (or cpu_replicas logical CPU "
        "devices); multi_worker: the hosts TF_CONFIG names (captcha_ocr.distribute)",
    )
    cpu_replicas: int = Field(
        2, ge=1, le=64, description="mirrored on a host without a GPU: logical CPU devices"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ValueError("warmup_epochs: only the cosine schedule warms up")
        if self.warmup_epochs >= self.epochs:
            raise ValueError("warmup_epochs: must be shorter than epochs")
        if self.reduce_lr.enabled and self.reduce_lr.min_lr >= self.learning_rate:
            # Keras would raise the rate to this floor at the first reduction.
            raise ValueError(
                f"reduce_lr.min_lr: must be below learning_rate ({self.learning_rate})"
            )
        return self


def cluster_problem(train: TrainParams) -> str | None:
    """What stops train.distribute: multi_worker in this environment, as the train
    stage reports it before any work (not TensorFlow, minutes later); None if nothing.
    Only training needs the cluster: other stages and tools read the same params.yaml
    without TF_CONFIG."""
    if train.distribute != "multi_worker":
        return None
    try:
        cluster_role(os.environ.get(TF_CONFIG))
    except ValueError as error:
        return (
            "train.distribute: multi_worker takes the cluster from the TF_CONFIG "
            f"environment variable, and {error}"
        )
    return None


class EvaluateParams(Section):
    batch_size: int = Field(256, ge=1, le=65_536)
    decoder: Literal["greedy", "beam_search"] = "greedy"
    # Beam search's time and memory grow with the width; past ~100 it buys nothing here.
    beam_width: int = Field(10, ge=1, le=100)
    tta_shifts: int = Field(
        2,
        ge=0,
        le=8,
        description="test-time shifts: also read each image moved 1..N pixels left and "
        "right and keep the text the reads agree on (captcha_ocr.tta); 0 = one read",
    )


class MLflowParams(Section):
    tracking_uri: str | None = Field(
        None,
        description="None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns/mlflow.db",
    )
    experiment_name: str = Field("captcha-ocr", min_length=1)
    log_model: bool = True
    registered_model: str | None = Field(
        "captcha-ocr",
        description="registry name; the alias `champion` follows the best test accuracy. "
        "None: do not register",
    )


class Params(Section):
    # populate_by_name: the `import` section is `import_` in Python.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True
    )

    data: DataParams = DataParams()
    generate: GenerateParams = GenerateParams()
    import_: ImportParams = Field(ImportParams(), alias="import")
    tfrecord: TFRecordParams = TFRecordParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MLflowParams = MLflowParams()

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Params:
        # Relative paths (fonts, weights) start at the project: the params file's folder.
        root = Path((info.context or {}).get("root") or Path.cwd())
        unknown = sorted(set(self.generate.oversample.symbols) - set(self.data.symbols))
        if unknown:
            raise ValueError(
                f"generate.oversample.symbols: {unknown} not in the charset ({self.data.charset})"
            )
        generated = self.generate
        if self.model.arch in MULTIHEAD_ARCHS and self.data.uses_generated:
            # Caught here, not when the model is built after minutes of generating.
            one_length = f"model.arch {self.model.arch} reads one length, not"
            if generated.max_length > generated.min_length:
                raise ValueError(
                    f"generate.max_length: {one_length} {generated.min_length}-"
                    f"{generated.max_length}: make it min_length (and train_lengths null), "
                    "or use crnn_ctc"
                )
            if generated.varies_in_length:
                shortest, longest = generated.lengths("train")
                raise ValueError(
                    f"generate.train_lengths: {one_length} {shortest}-{longest}: "
                    "set it to null, or use crnn_ctc"
                )
        if self.model.arch == "crnn_ctc" and self.data.uses_generated:
            # Caught here, not when the model is built after minutes of generating.
            self.model.crnn_ctc.check_fits(
                self.model.input_width or generated.image_width,
                self.model.input_height or generated.image_height,
                max(generated.lengths("train")[1], generated.max_length),
            )
        weights = self.model.resnet50_multihead.weights
        if self.model.arch == "resnet50_multihead" and weights:
            if not (root / weights).is_file():
                raise ValueError(f"model.resnet50_multihead.weights: {weights} is not a file")
            if self.model.channels != 3:
                raise ValueError("model.channels: pretrained ResNet50 weights need 3 (RGB)")
        if self.data.uses_generated:
            from captcha_ocr import fonts  # here: it reads font files, only when generating

            try:
                fonts.resolve_all(generated.fonts, self.data.symbols, root)
            except ValueError as error:
                raise ValueError(f"generate.fonts: {error}") from None
        return self


_FIELD_MESSAGE = re.compile(r"^(?P<field>[a-z0-9_.]+): (?P<message>.*)$", re.DOTALL)


def _dotted_key(loc: tuple[int | str, ...]) -> list[str]:
    """The parts of an error's location as written in params.yaml: fields (by alias),
    list positions and unknown keys, without the type names pydantic adds for each
    member of a union (`convs_per_block.int`)."""
    parts: list[str] = []
    model: type[BaseModel] | None = Params
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
            continue
        if model is None:
            continue  # inside a plain field: a union member's type name
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        parts.append(part)
        annotation = fields[part].annotation if part in fields else None
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_model else None
    return parts


def _format_errors(error: ValidationError) -> str:
    lines = []
    for detail in error.errors():
        parts = _dotted_key(detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        # A check across fields runs on the section; its message starts with
        # the field it blames, which completes the dotted key.
        if match := _FIELD_MESSAGE.match(message):
            parts.append(match["field"])
            message = match["message"]
        lines.append(f"{'.'.join(parts) or '<top level>'}: {message}")
    return "\n".join(lines)


def parse_params(
    raw: dict[str, Any] | None, source: str = "params", root: Path | None = None
) -> Params:
    """Validate a params mapping; raise ParamsError naming every bad dotted key.
    root: where relative font and weights paths start (default: the working folder)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw, context={"root": root})
    except ValidationError as error:
        raise ParamsError(f"invalid {source}:\n{_format_errors(error)}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping: plain YAML keeps the last,
    so a section pasted twice would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a folder, not a params file") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not UTF-8 text (a binary file?)") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if raw is None:
        # An empty file would silently mean every default: 87,000 captchas and an hour.
        raise ParamsError(f"{path}: is empty; copy the project's params.yaml and edit it")
    return parse_params(raw, source=str(path), root=path.resolve().parent)


def load_params_or_exit(path: Path | str = "params.yaml") -> Params:
    """For stage entry points: a bad params file ends the process with the message
    alone, before any work, instead of a traceback."""
    try:
        return load_params(path)
    except ParamsError as error:
        raise SystemExit(f"error: {error}") from None


def flatten(params: Params) -> dict[str, Any]:
    """`section.key` -> value, the form MLflow params and `dvc exp run -S` use."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = list(value) if isinstance(value, tuple) else value

    walk("", params.model_dump(by_alias=True))
    return flat
