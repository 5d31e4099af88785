"""Experiment configurations: YAML files validated with pydantic.

A configuration describes one training run (data, model, optimizer, method, schedule, output)
and, optionally, the methods and seeds ``pathcond compare`` loops over. Every section
rejects unknown keys; every error is turned into one line naming the offending key, e.g.
``config.yaml: training.epochs: must be greater than 0 (got -3)`` or
``config.yaml: unknown key 'training.epoch' (did you mean 'epochs'?)``.

Example::

    name: mnist-irregular
    seed: 0
    data: {name: mnist, limit: 10000}
    model: {name: mlp, args: {widths: [784, 512, 32, 256, 16, 10]}}
    optimizer: {name: sgd, lr: 0.05, momentum: 0.0}
    training: {epochs: 5, batch_size: 128, target_accuracy: 0.95}
    method: {name: pathcond, at_init: true}
    compare: {methods: [baseline, pathcond], seeds: [0, 1]}
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ConfigError

__all__ = [
    "BaselineConfig", "CompareConfig", "DataConfig", "ENormConfig", "ExperimentConfig",
    "GSGDConfig", "METHOD_NAMES", "MethodConfig", "ModelConfig", "OptimizerConfig",
    "OutputConfig", "PathCondConfig", "PathSGDConfig", "TrainingConfig", "WeightFixConfig",
    "apply_overrides", "load_config", "method_label", "parse_method", "validate_config",
]


class _Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DataConfig(_Strict):
    """Which dataset, where it is, how it is split."""

    name: str = Field(default="mnist",
                      description="mnist, fashion_mnist, cifar10, moons, digits, synthetic")
    root: str | None = Field(default=None,
                             description="directory or file of the data, if not default")
    val_fraction: float | None = Field(default=None, ge=0, lt=1,
                                       description="share of the training set held out")
    limit: PositiveInt | None = Field(default=None, description="keep this many training samples")
    split_seed: int = Field(default=0, ge=0, description="seed of the split and the `limit` "
                                                         "draw; fixed across training seeds")
    task: Literal["classification", "autoencoding", "image_autoencoding"] = Field(
        default="classification",
        description="classification; autoencoding (targets are the inputs, flattened: the "
                    "paper's MLP autoencoder); image_autoencoding (inputs and targets keep "
                    "their shape, e.g. (1, 28, 28): for convolutional autoencoders)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="dataset-specific options (e.g. n, noise)")

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        from ..data.registry import canonical_name

        try:
            return canonical_name(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class ModelConfig(_Strict):
    """A zoo model (``pathcond models``) or one of the user's (``package.module:callable``),
    its constructor arguments, and one sample's input shape (taken from the zoo when it is
    the data's, or the flat size of the data's samples for a zoo MLP; else from the data,
    and then saved resolved: a model of yours, a fully convolutional zoo model at another
    image size)."""

    name: str = "mlp"
    args: dict[str, Any] = Field(default_factory=dict)
    input_shape: list[PositiveInt] | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from ..models import available_models, is_user_model

        if value not in available_models() and not is_user_model(value):
            raise ValueError(f"unknown model {value!r}; available: "
                             f"{', '.join(available_models())} (or a model of yours as "
                             "'package.module:callable')")
        return value


class OptimizerConfig(_Strict):
    """The base optimizer (Path-SGD and G-SGD bring their own and use ``lr`` from here)."""

    name: Literal["sgd", "adam"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    lr_scales: dict[str, PositiveFloat] | Literal["pathcond"] = Field(
        default_factory=dict,
        description="learning-rate multipliers by module or parameter name (a parameter "
                    "takes the factor of the name it equals or lies under, e.g. "
                    "{decoder.2: 6.0}); each name must match some parameter. 'pathcond': "
                    "PathCond at initialisation as one factor per parameter tensor, without "
                    "rescaling (resolved to such a mapping when the run starts)")

    @field_validator("lr_scales", mode="before")
    @classmethod
    def _lr_scales_kind(cls, value: Any) -> Any:
        if not isinstance(value, dict) and value != "pathcond":
            raise ValueError(f"must be a mapping {{name: factor}} or 'pathcond', got {value!r}")
        return value

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"each beta must be in [0, 1), got {list(value)}")
        return value

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


class TrainingConfig(_Strict):
    """Schedule of the training loop."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = Field(
        default=128, gt=0, description="minibatch size; in a distributed run the global "
                                       "batch, split over the processes")
    eval_batch_size: PositiveInt = 1024
    drop_last: bool = False
    target_accuracy: float | None = Field(default=None, gt=0, le=1,
                                          description="report the first epoch reaching it")
    target_split: Literal["train", "val", "test"] = "train"
    am_gm: bool = Field(default=True, description="log the AM/GM of the path magnitudes each epoch")
    evaluate_test: bool = Field(default=True, description="evaluate on the test set each epoch")
    threads: PositiveInt | None = Field(
        default=None, description="torch CPU threads (default: torch's); results are "
                                  "bit-identical only for the same number")


class OutputConfig(_Strict):
    """Where and what a run writes."""

    dir: str | None = Field(default=None, description="run directory (default runs/<name>)")
    keep_checkpoints: PositiveInt = Field(default=2, description="epoch checkpoints kept on disk")
    tensorboard: bool = False
    progress: bool = True
    plot: bool = True
    plot_format: Literal["png", "svg"] = "png"


class BaselineConfig(_Strict):
    """Plain training."""

    name: Literal["baseline"] = "baseline"


class PathCondConfig(_Strict):
    """PathCond rescaling (paper section 4) with :class:`pathcond.rescale.PathCondSchedule`:
    at initialisation (``at_init``), every ``every_steps`` optimizer steps or every
    ``every_epochs`` epochs, and whenever the AM/GM of the path magnitudes exceeds
    ``am_gm_threshold`` (checked every ``check_every`` steps). The optimizer state is
    transported at each rescaling."""

    name: Literal["pathcond"] = "pathcond"
    at_init: bool = True
    every_steps: PositiveInt | None = None
    every_epochs: PositiveInt | None = None
    am_gm_threshold: float | None = Field(default=None, ge=1.0, allow_inf_nan=False)
    check_every: PositiveInt = 1
    solver: Literal["newton", "block", "coordinate"] = "newton"
    tol: PositiveFloat = 1e-10
    max_sweeps: PositiveInt = 1000

    @model_validator(mode="after")
    def _one_period(self) -> PathCondConfig:
        if self.every_steps is not None and self.every_epochs is not None:
            raise ValueError("give at most one of every_steps and every_epochs")
        return self


Strategy = Literal["skeleton", "hungarian", "largest"]


class ENormConfig(_Strict):
    """ENorm / equinormalization (Stock et al. 2019): one balancing cycle every ``every``
    optimizer steps (paper), or every ``every_epochs`` epochs instead (the public code in
    the PathCond experiments)."""

    name: Literal["enorm"] = "enorm"
    c: PositiveFloat = 1.0
    p: PositiveFloat = 2.0
    every: PositiveInt = 1
    every_epochs: PositiveInt | None = None
    exclude_batchnorm: bool = True
    schedule: Literal["layers", "colours"] = "layers"


class PathSGDConfig(_Strict):
    """Path-SGD (Neyshabur et al. 2015): ``w <- w - lr g / (m + eps)``; uses ``optimizer.lr``
    and ``optimizer.momentum`` (``optimizer.name`` must be sgd)."""

    name: Literal["pathsgd"] = "pathsgd"
    eps: NonNegativeFloat = 0.0


Init = Literal["rescale", "keep", "ones"]


def _legacy_set_to_one(data: Any) -> Any:
    """Map the legacy ``set_to_one`` key onto ``init`` (true: rescale, false: keep)."""
    if isinstance(data, Mapping) and "set_to_one" in data:
        data = dict(data)
        legacy = data.pop("set_to_one")
        if not isinstance(legacy, bool):
            raise ValueError(f"set_to_one (legacy form of init) must be true or false, got "
                             f"{legacy!r}")
        mapped = "rescale" if legacy else "keep"
        if data.setdefault("init", mapped) != mapped:
            raise ValueError("give init only (set_to_one is its legacy form)")
    return data


class GSGDConfig(_Strict):
    """G-SGD (Meng et al. 2019): SGD (``optimizer.name: sgd``, with its lr and momentum) on
    the basis-path values; with ``optimizer.name: adam``, Adam in G-space (thesis).
    ``init``: ``rescale`` (function-preserving, default), ``keep``, or ``ones`` (the G-SGD
    paper's initialisation, every skeleton weight overwritten with 1: changes the function;
    needed to train at SGD-sized learning rates, see docs/methods.md). The legacy key
    ``set_to_one`` (true / false) is read as ``init: rescale`` / ``keep``."""

    name: Literal["gsgd"] = "gsgd"
    strategy: Strategy = "skeleton"
    init: Init = "rescale"

    _legacy = model_validator(mode="before")(_legacy_set_to_one)


class WeightFixConfig(_Strict):
    """Weight fixing (thesis section 3): one outgoing weight per hidden unit is fixed; the
    rest trained by the configured optimizer. ``init``: ``rescale`` (fixed entries set to
    +-1 by a function-preserving rescaling, default), ``keep`` (fixed as drawn) or ``ones``
    (overwritten with 1, the thesis' Fixed SGD: changes the function); legacy
    ``set_to_one`` as for gsgd."""

    name: Literal["weightfix"] = "weightfix"
    strategy: Strategy = "skeleton"
    init: Init = "rescale"

    _legacy = model_validator(mode="before")(_legacy_set_to_one)


METHOD_NAMES: tuple[str, ...] = ("baseline", "pathcond", "enorm", "pathsgd", "gsgd", "weightfix")


def _method_mapping(value: Any) -> Any:
    """Accept ``"pathcond"`` as shorthand for ``{name: pathcond}``; check the name."""
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, Mapping):
        name = value.get("name")
        if name is None:
            raise ValueError(f"a method needs a name: one of {', '.join(METHOD_NAMES)}")
        if name not in METHOD_NAMES:
            raise ValueError(f"unknown method {name!r}; available: {', '.join(METHOD_NAMES)}")
    return value


MethodConfig = Annotated[
    BaselineConfig | PathCondConfig | ENormConfig | PathSGDConfig | GSGDConfig | WeightFixConfig,
    Field(discriminator="name"),
    BeforeValidator(_method_mapping),
]
_METHOD_CLASSES: dict[str, type[BaseModel]] = {
    "baseline": BaselineConfig, "pathcond": PathCondConfig, "enorm": ENormConfig,
    "pathsgd": PathSGDConfig, "gsgd": GSGDConfig, "weightfix": WeightFixConfig,
}


def _default_methods() -> list[Any]:
    return [BaselineConfig(), PathCondConfig()]


class CompareConfig(_Strict):
    """What ``pathcond compare`` loops over."""

    methods: list[MethodConfig] = Field(default_factory=lambda: _default_methods())
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0])

    @field_validator("methods")
    @classmethod
    def _non_empty_unique(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("give at least one method")
        labels = [method_label(m) for m in value]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"method {dup[0]!r} is listed twice")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one seed")
        if len(set(value)) != len(value):
            raise ValueError(f"seeds repeat: {value}")
        return value


class ExperimentConfig(_Strict):
    """One experiment: everything a run needs, and the comparison grid."""

    name: str = Field(default="run", min_length=1)
    seed: int = Field(default=0, ge=0)
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps")
    data: DataConfig = Field(default_factory=lambda: DataConfig())
    model: ModelConfig = Field(default_factory=lambda: ModelConfig())
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig())
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig())
    method: MethodConfig = Field(default_factory=lambda: BaselineConfig())
    output: OutputConfig = Field(default_factory=lambda: OutputConfig())
    compare: CompareConfig = Field(default_factory=lambda: CompareConfig())

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        v = value.strip().lower()
        ok = v in ("auto", "cpu", "cuda", "mps") or (
            v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps; got {value!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"name must not contain a path separator, got {value!r}")
        return value

    def run_dir(self) -> Path:
        """The run directory: ``output.dir`` or ``runs/<name>``."""
        return Path(self.output.dir) if self.output.dir else Path("runs") / self.name

    def to_dict(self) -> dict[str, Any]:
        """A plain (YAML-safe) dictionary with every default filled in (``model.input_shape``
        only when set: files stay readable by versions before it)."""
        out: dict[str, Any] = self.model_dump(mode="json")
        if out["model"].get("input_shape") is None:
            out["model"].pop("input_shape", None)
        return out


def method_label(method: Any) -> str:
    """A short label for a method config: its name plus the options differing from defaults,
    e.g. ``pathcond`` or ``pathcond[every_epochs=1]``."""
    default = type(method)()
    diffs: list[str] = []
    for key in type(method).model_fields:
        if key == "name":
            continue
        value, base = getattr(method, key), getattr(default, key)
        if value != base:
            if isinstance(value, dict):
                diffs.extend(f"{k}={v}" for k, v in sorted(value.items()) if base.get(k) != v)
            else:
                diffs.append(f"{key}={value}")
    return f"{method.name}[{','.join(diffs)}]" if diffs else str(method.name)


def parse_method(value: str | Mapping[str, Any]) -> Any:
    """A method config from ``"pathcond"`` or a mapping such as ``{name: enorm, c: 0.5}``."""
    try:
        return ExperimentConfig.model_validate({"method": value}).method
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "method")) from None


# ----------------------------------------------------------------------------- errors


def _fmt_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _location(loc: Sequence[int | str]) -> list[str]:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # Discriminated unions insert the tag (the method's name) into the location.
        prev = loc[i - 1] if i else None
        if isinstance(item, str) and item in METHOD_NAMES and (
                prev == "method" or (isinstance(prev, int) and "methods" in loc[:i])):
            continue
        # Plain unions (optimizer.lr_scales) insert the member's type name.
        if isinstance(item, str) and prev == "lr_scales" and item.startswith(("dict[",
                                                                               "literal[")):
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return parts


def _allowed_keys(loc: Sequence[int | str]) -> list[str]:
    """The keys allowed at the parent of an unknown key (for 'did you mean')."""
    cls: Any = ExperimentConfig
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        if isinstance(item, str) and item in _METHOD_CLASSES:
            cls = _METHOD_CLASSES[item]
            continue
        field = getattr(cls, "model_fields", {}).get(item) if cls is not None else None
        ann = None if field is None else field.annotation
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(getattr(cls, "model_fields", {}))


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line for the first error of a pydantic ``ValidationError``, naming the key."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    if prefix:
        loc = (prefix, *loc) if not loc or loc[0] != prefix else loc
    key = "".join(_location(loc)) or "(top level)"
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        allowed = _allowed_keys(loc)
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else (
            f" (allowed: {', '.join(allowed)})" if allowed else "")
        return f"unknown key '{key}'{extra}"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if etype == "missing":
        return f"{key}: missing"
    if etype == "union_tag_invalid":
        return f"{key}: unknown method; available: {', '.join(METHOD_NAMES)}"
    text = f"{key}: {msg[0].lower() + msg[1:] if msg else msg}"
    if "input" in err and etype not in ("value_error", "assertion_error") \
            and not isinstance(err["input"], dict):
        text += f" (got {_fmt_value(err['input'])})"
    return text


def validate_config(data: Mapping[str, Any] | None, source: str = "config") -> ExperimentConfig:
    """Validate a mapping as an :class:`ExperimentConfig`, raising a one-line ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, "
                          f"got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every problem into a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist" if not p.exists()
                          else f"config {str(p)!r} is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {str(p)!r}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, "
                          f"got {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override (``key.sub=value`` strings) and validate a YAML experiment file."""
    data = read_yaml(path)
    if not data and not overrides:
        raise ConfigError(f"config {str(path)!r} is empty: write at least its data and model "
                          "(see configs/mnist_demo.yaml), or give --set options")
    return validate_config(apply_overrides(data, overrides), str(path))


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a nested mapping.

    ``method=pathcond`` replaces the whole method; ``method.every_epochs=2`` sets one of its
    options (turning a string shorthand into a mapping first).
    """
    out: dict[str, Any] = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. training.epochs=3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
        parts = key.split(".")
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and parts[:i + 1] == ["method"]:
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(parts[:i + 1])}' is not a "
                                  "section")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def finite(value: float | None) -> float | None:
    """``value`` if it is a finite float, else ``None`` (for JSON-safe metrics)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
