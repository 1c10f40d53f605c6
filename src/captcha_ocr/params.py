"""The one schema for params.yaml: typed, frozen, validated once when loaded.

Every stage calls `load_params` before doing any work, so a misspelt key or an
out-of-range value stops the pipeline at once with the dotted key as written in
params.yaml (`train.learning_rate: Input should be greater than 0`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from captcha_ocr import charsets


class ParamsError(ValueError):
    """params.yaml is missing, unreadable, or does not match the schema."""


class Section(BaseModel):
    # frozen: a stage cannot quietly change a knob after it was logged.
    # extra="forbid": a typo is an error, not a silently ignored key.
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitCounts(Section):
    train: int = Field(80_000, ge=1)
    val: int = Field(2_000, ge=1)
    test: int = Field(5_000, ge=1)


class OversampleParams(Section):
    """Symbols the train split draws `factor` times as often as the others, and
    how often its characters repeat the one before them (`doubled`).

    Symbols are one string, not a mapping keyed by symbol: `{0: 4, O: 4}` has an
    int and a str key, which DVC cannot hash (it sorts params keys), and `dvc exp
    run -S` cannot quote a key to make it text. Whether they are in the charset is
    checked by Params, which knows the charset.
    """

    symbols: str = Field("", description="e.g. 0O; empty = off")
    factor: float = Field(4.0, gt=0, allow_inf_nan=False)
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
    seed: int = Field(42, description="draws the generated captchas and splits imported ones")

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

    min_length: int = Field(4, ge=1, le=32)
    max_length: int = Field(4, ge=1, le=32)
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
    font_sizes: tuple[int, ...] = (42, 50, 56)
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
    noise_dots: int = Field(30, ge=0)
    noise_dot_width: int = Field(3, ge=1)
    noise_curves: int = Field(1, ge=0)
    oversample: OversampleParams = OversampleParams()
    splits: SplitCounts = SplitCounts()
    workers: int = Field(0, ge=0, description="processes; 0 = all cores")

    @model_validator(mode="after")
    def _check(self) -> GenerateParams:
        if self.max_length < self.min_length:
            raise ValueError(f"max_length: must be >= min_length ({self.min_length})")
        if self.train_lengths is not None:
            shortest, longest = self.train_lengths
            if not 1 <= shortest <= longest <= 32:
                raise ValueError(
                    "train_lengths: needs 1 <= shortest <= longest <= 32, got "
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
        if not self.font_sizes or min(self.font_sizes) < 4:
            raise ValueError("font_sizes: needs at least one size, each >= 4")
        for name in ("rotation", "warp_x", "warp_y", "offset_x", "offset_y"):
            _check_range(name, getattr(self, name))
        for name in ("offset_x", "offset_y"):
            if min(getattr(self, name)) < 0:
                raise ValueError(f"{name}: offsets must be >= 0")
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
    shard_size: int = Field(5_000, ge=1, description="examples per shard")
    compression: Literal["none", "gzip"] = "none"


class CRNNParams(Section):
    """Conv blocks read left to right as a sequence, then bidirectional RNNs and CTC."""

    stem_filters: int = Field(
        0, ge=0, description="a stride-2 3x3 conv before the blocks: learned downsampling; 0 = none"
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
    dense_units: int = Field(128, ge=1)
    dropout: float = Field(0.25, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> CRNNParams:
        if not self.conv_filters or any(filters < 1 for filters in self.conv_filters):
            raise ValueError("conv_filters: needs at least one entry, each >= 1")
        if len(self.pool_widths) != len(self.conv_filters):
            raise ValueError("pool_widths: needs one entry per conv_filters entry")
        if len(self.block_convs) != len(self.conv_filters):
            raise ValueError("convs_per_block: needs one entry per conv_filters entry")
        if any(convs < 1 for convs in self.block_convs):
            raise ValueError("convs_per_block: must be >= 1")
        if any(width not in (1, 2) for width in self.pool_widths):
            raise ValueError("pool_widths: entries must be 1 or 2")
        if not self.rnn_units or any(units < 1 for units in self.rnn_units):
            raise ValueError("rnn_units: needs at least one entry, each >= 1")
        return self

    @property
    def block_convs(self) -> tuple[int, ...]:
        """convs_per_block with one entry per block."""
        if isinstance(self.convs_per_block, int):
            return (self.convs_per_block,) * len(self.conv_filters)
        return self.convs_per_block


class CNNMultiheadParams(Section):
    """Blocks of 3x3 convolutions (+ BatchNorm) and max-pooling, then a head per position."""

    conv_filters: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_block: int = Field(2, ge=1)
    dense_units: int = Field(256, ge=0, description="0: the heads read the flattened map")
    dropout: float = Field(0.25, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> CNNMultiheadParams:
        if not self.conv_filters or any(filters < 1 for filters in self.conv_filters):
            raise ValueError("conv_filters: needs at least one entry, each >= 1")
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
    input_width: int | None = Field(128, ge=16, description="None: the data's width")
    input_height: int | None = Field(32, ge=16, description="None: the data's height")
    channels: Literal[1, 3] = Field(1, description="1 = grayscale")
    crnn_ctc: CRNNParams = CRNNParams()
    cnn_multihead: CNNMultiheadParams = CNNMultiheadParams()
    vgg_multihead: VGGMultiheadParams = VGGMultiheadParams()
    resnet50_multihead: ResNet50MultiheadParams = ResNet50MultiheadParams()


class EarlyStoppingParams(Section):
    enabled: bool = True
    monitor: str = "val_loss"
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best_weights: bool = True


class ReduceLROnPlateauParams(Section):
    enabled: bool = True
    monitor: str = "val_loss"
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(2, ge=0)
    min_lr: float = Field(1.0e-5, ge=0.0)


class CheckpointParams(Section):
    monitor: str = "val_loss"


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


class TrainParams(Section):
    seed: int = 1234
    deterministic: bool = Field(
        True,
        description="TensorFlow op determinism: the same params, data and machine train "
        "the same weights run after run",
    )
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(64, ge=1)
    min_steps_per_epoch: int = Field(
        600,
        ge=0,
        description="an epoch goes through a smaller training split several times, to make "
        "at least this many optimizer steps (a small set of one's own captchas); 0 = once",
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(2.0e-3, gt=0.0, description="the peak rate with warmup")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="constant or cosine decay to 1%; ReduceLROnPlateau lowers either"
    )
    warmup_epochs: float = Field(0.3, ge=0.0, description="linear warmup, cosine schedule only")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(0.0, ge=0.0, description="adamw only")
    clipnorm: float | None = Field(None, gt=0.0)
    shuffle_buffer: int = Field(10_000, ge=1)
    cache: bool = Field(True, description="keep decoded images in memory after epoch 1")
    resume: bool = Field(True, description="continue an interrupted run from its last epoch")
    augment: AugmentParams = AugmentParams()
    early_stopping: EarlyStoppingParams = EarlyStoppingParams()
    reduce_lr: ReduceLROnPlateauParams = ReduceLROnPlateauParams()
    checkpoint: CheckpointParams = CheckpointParams()

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ValueError("warmup_epochs: only the cosine schedule warms up")
        if self.warmup_epochs >= self.epochs:
            raise ValueError("warmup_epochs: must be shorter than epochs")
        return self


class EvaluateParams(Section):
    batch_size: int = Field(256, ge=1)
    decoder: Literal["greedy", "beam_search"] = "greedy"
    beam_width: int = Field(10, ge=1)
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
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    data: DataParams = DataParams()
    generate: GenerateParams = GenerateParams()
    import_: ImportParams = Field(ImportParams(), alias="import")
    tfrecord: TFRecordParams = TFRecordParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MLflowParams = MLflowParams()

    @model_validator(mode="after")
    def _check(self) -> Params:
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
        return self


_FIELD_MESSAGE = re.compile(r"^(?P<field>[a-z_.]+): (?P<message>.*)$", re.DOTALL)


def _format_errors(error: ValidationError) -> str:
    lines = []
    for detail in error.errors():
        # loc holds the path as written in params.yaml.
        parts = [str(part) for part in detail["loc"]]
        message = detail["msg"].removeprefix("Value error, ")
        # A check across fields runs on the section; its message starts with
        # the field it blames, which completes the dotted key.
        if match := _FIELD_MESSAGE.match(message):
            parts.append(match["field"])
            message = match["message"]
        lines.append(f"{'.'.join(parts) or '<top level>'}: {message}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a params mapping; raise ParamsError naming every bad dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"invalid {source}:\n{_format_errors(error)}") from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, source=str(path))


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
