"""Training configs: YAML (plus `--set key=value` overrides) -> one validated, typed `TrainConfig`.

Everything is checked here, before any model is built: unknown keys (with the nearest valid one
suggested), types, ranges, and that the files and folders named exist.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from keras_style.errors import UserError

METHODS = ("transform", "metanet")
DISTRIBUTE = ("none", "mirrored", "multi_worker")
LOSS_FORMS = ("squared", "distances")
STYLE_CACHE = Path.home() / ".cache" / "keras_style" / "styles"


class ConfigError(UserError):
    """A config file or override that cannot be used."""


@dataclass(frozen=True)
class TrainConfig:
    # What to learn. `style_image` is a path or an http(s) URL (downloaded once, cached).
    naming: str
    style_image: Optional[str] = None
    method: str = "transform"
    model_path: str = "models"
    train_data: str = "train2014"
    val_images: Optional[str] = None
    # Loss.
    content_weight: float = 1.0
    style_weight: float = 1e5
    tv_weight: float = 0.0
    # squared: mean squared feature error + squared relative Gram distances (Johnson et al.);
    # distances: per-image relative distances, unsquared (the yardstick's content_dist, style_dist)
    loss_form: str = "squared"
    loss_model: str = "vgg19"
    loss_model_file: Optional[str] = None
    content_layers: tuple = ("relu4_2",)
    style_layers: tuple = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_size: int = 512
    # Network.
    base: int = 16                            # channels at full resolution (2 x base at half)
    residual_blocks: int = 5
    residual_width: Optional[int] = None      # channels at a quarter (residual blocks); 4 x base if unset
    # A .keras file to start from instead of random weights. Method transform: a per-style model
    # (another style's network) or a MetaNet (the network it generates for style_image); its shape
    # replaces base, residual_width and residual_blocks. Method metanet: a MetaNet of this config's
    # shape, continued with a fresh optimiser (when a run's checkpoints are gone), or of its shape but
    # fewer residual blocks: the blocks this config adds start as the identity.
    init_from: Optional[str] = None
    # With init_from (method transform): residual blocks appended to the starting network, each
    # starting as the identity, so training begins from the same function with more capacity.
    extra_residual_blocks: int = 0
    # With init_from (method transform): channels added to the starting network's `base` (and twice as
    # many at half resolution) and to its residual width; they start out of the way (nothing they
    # compute reaches the old channels yet), so training begins from the same function.
    extra_base_channels: int = 0
    extra_residual_channels: int = 0
    # MetaNet (method: metanet): styles come from a folder, not from style_image.
    style_data: Optional[tuple] = None        # folder(s) of training style images (required)
    val_styles: Optional[str] = None          # style images for the TensorBoard preview grid
    style_norms: bool = True                  # the MetaNet also sets every instance norm's scale and shift
    style_output_convs: bool = False          # ... and changes the last up-sampling and output convolutions
    # false: the output convolution reads the last up-sampling's norm directly, so no region can go
    # dark in every channel and collapse to the output's bias (the grey patches; see the README).
    relu_before_output: bool = True
    # true: the dynamic convolutions demodulate their kernels and their norms only scale and shift, so
    # nothing in the residual stream depends on the image's statistics (no droplets; see the README).
    demodulate: bool = False
    # Judge every training style at exactly style_size on its longer side, smaller paintings enlarged
    # (as the yardstick does), instead of at their own size up to style_size.
    enlarge_styles: bool = False
    color_weight: float = 0.0                 # weight of the colour term (the result's colours vs the painting's)
    # A number from 0 to 1: the transform ends by giving each colour channel of the result the
    # painting's mean, and moves its spread that far to the painting's (layers.ColourMatch).
    color_match: Optional[float] = None
    # true: the transform ends by drawing any colour outside both the photo's and the painting's
    # palettes back to their border (layers.KeepPalette).
    keep_palette: bool = False
    eval_every: int = 0                       # > 0: measure val_styles x val_images every so many steps
    kernel_rank: int = 0                      # > 0: low-rank kernel outputs (metanet.build_metanet)
    steps_per_style: int = 20                 # single-style phase: steps on each style
    styles_before_batching: int = 30          # styles seen one at a time before batches mix styles
    styles_per_batch_min: int = 4             # then each batch mixes min..max styles (<= batch_size)
    styles_per_batch_max: int = 8
    # The MetaNet's variables learn at learning_rate x this (the transform's own layers at learning_rate).
    metanet_learning_rate_scale: float = 1.0
    # Schedule.
    image_size: int = 256
    # Photos are scaled so their shorter side is this before the random `image_size` crop (default:
    # image_size). Cropping 128 px from 256 px photos sees content at the 256 px scale for a quarter
    # of the compute.
    photo_size: Optional[int] = None
    batch_size: int = 4
    epoch: int = 2
    max_steps: Optional[int] = None
    learning_rate: float = 1e-3
    # The last `final_steps` steps train at `final_learning_rate` instead (a low-rate tail settles
    # the weights: on the_scream 250 steps at 1e-3 after 1000 at 3e-3 took style_dist 0.42 -> 0.39).
    final_learning_rate: Optional[float] = None
    final_steps: int = 0
    # The rate climbs linearly to learning_rate over the first `warmup_steps` steps of a run: a fresh
    # Adam's first updates move every weight by about the full rate (its moment estimates start
    # empty), so a continuation from trained weights (init_from) can ease in.
    warmup_steps: int = 0
    optimizer: str = "adam"
    log_every: int = 100
    save_every: int = 500
    seed: int = 0
    # auto: bfloat16 arithmetic where the hardware has it natively, float32 elsewhere (precision.py);
    # true / bfloat16 and false / float32 force one.
    mixed_precision: str = "auto"
    distribute: str = "none"
    # Free text: how the shipped model was trained here (kept with the config, not used).
    notes: str = ""

    @property
    def run_dir(self):
        return Path(self.model_path) / self.naming

    @property
    def photo_side(self):
        """The shorter side photos are scaled to before cropping."""
        return self.photo_size or self.image_size

    @property
    def export_path(self):
        return self.run_dir / f"{self.naming}.keras"


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_REQUIRED = [f.name for f in dataclasses.fields(TrainConfig)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def load_config(path, overrides=()):
    """Read `path`, apply `key=value` overrides, validate, and return a TrainConfig."""
    raw = _read_yaml(Path(path))
    for item in overrides:
        key, value = _parse_override(item)
        raw[key] = value
    return validate(raw, source=str(path))


def _read_yaml(path):
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _parse_override(item):
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def validate(raw, source="config"):
    values = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key)}")
        values[key] = _coerce(key, value, source)
    for key in _REQUIRED:
        if key not in values:
            raise ConfigError(f"{source}: missing required key {key!r}")
    config = TrainConfig(**values)
    _check_values(config, source)
    return dataclasses.replace(config, residual_width=config.residual_width or 4 * config.base)


def _suggest(key):
    close = difflib.get_close_matches(str(key), list(_FIELDS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(key, value, source):
    if key == "mixed_precision":
        from keras_style.precision import normalise_setting  # cheap: no TensorFlow import
        try:
            return normalise_setting(value, "mixed_precision")
        except UserError as exc:
            raise ConfigError(f"{source}: {exc} (or true / false)") from None
    kind = _FIELDS[key].type
    optional = kind.startswith("Optional[") if isinstance(kind, str) else False
    base = kind[len("Optional["):-1] if optional else kind
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {key} must not be empty")
    if base == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base == "float" and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 2e6 (no dot) as a string; users mean the number
    expected = {"str": str, "int": int, "float": float, "bool": bool}.get(base)
    if expected is int and isinstance(value, bool):
        expected = None
    if base == "tuple":
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
            return tuple(value)
        what = "folders" if key == "style_data" else "layer names"
        raise ConfigError(f"{source}: {key} must be a non-empty list of {what}")
    if expected is None or not isinstance(value, expected):
        raise ConfigError(f"{source}: {key} must be {_article(base)}, got {value!r}")
    return value


def _article(type_name):
    return {"int": "an integer", "float": "a number", "bool": "true or false",
            "str": "a string"}.get(type_name, type_name)


def _check_values(config, source):
    def fail(message):
        raise ConfigError(f"{source}: {message}")

    if config.method not in METHODS:
        fail(f"method must be one of {', '.join(METHODS)}, got {config.method!r}")
    if config.loss_model != "vgg19":
        fail(f"loss_model must be vgg19 (the only loss network), got {config.loss_model!r}")
    if config.loss_form not in LOSS_FORMS:
        fail(f"loss_form must be one of {', '.join(LOSS_FORMS)}, got {config.loss_form!r}")
    if config.optimizer not in ("adam", "adagrad2"):
        fail(f"optimizer must be adam or adagrad2, got {config.optimizer!r}")
    if config.optimizer == "adagrad2" and config.method != "metanet":
        fail("optimizer adagrad2 clips the MetaNet's gradients; it is for method metanet (use adam)")
    for key, default in (("metanet_learning_rate_scale", 1.0), ("color_weight", 0.0), ("eval_every", 0),
                         ("enlarge_styles", False)):
        if getattr(config, key) != default and config.method != "metanet":
            fail(f"{key} is for method metanet")
    if config.distribute not in DISTRIBUTE:
        fail(f"distribute must be one of {', '.join(DISTRIBUTE)}, got {config.distribute!r}")
    if not config.naming or "/" in config.naming or config.naming.startswith("."):
        fail(f"naming must be a plain name (used for models/<naming>/), got {config.naming!r}")
    positive = ("image_size", "batch_size", "epoch", "log_every", "save_every", "base",
                "style_size", "learning_rate")
    for key in positive:
        if getattr(config, key) <= 0:
            fail(f"{key} must be positive, got {getattr(config, key)}")
    if config.residual_width is not None and config.residual_width < 1:
        fail(f"residual_width must be at least 1, got {config.residual_width}")
    for key in ("content_weight", "style_weight", "tv_weight", "color_weight", "residual_blocks",
                "extra_residual_blocks", "extra_base_channels", "extra_residual_channels", "eval_every",
                "warmup_steps"):
        if getattr(config, key) < 0:
            fail(f"{key} must not be negative, got {getattr(config, key)}")
    growth = {"extra_residual_blocks": "deepens", "extra_base_channels": "widens",
              "extra_residual_channels": "widens"}
    for key, verb in growth.items():
        if getattr(config, key) and (config.method != "transform" or not config.init_from):
            fail(f"{key} {verb} the network of init_from: it needs method transform and init_from")
    for setting, chosen in (("relu_before_output: false", not config.relu_before_output),
                            ("demodulate: true", config.demodulate),
                            (f"color_match: {config.color_match}", config.color_match is not None),
                            ("keep_palette: true", config.keep_palette)):
        if chosen and config.method != "metanet":
            fail(f"{setting} shapes a MetaNet's transform: it needs method metanet")
    if config.demodulate and not config.style_norms:
        fail("demodulate: true needs style_norms: true (the scale and shift after a demodulated convolution)")
    if config.method == "metanet":
        _check_metanet_values(config, fail)
    if config.max_steps is not None and config.max_steps <= 0:
        fail(f"max_steps must be positive, got {config.max_steps}")
    _check_final_learning_rate(config, fail)
    if config.image_size < 16 or config.image_size % 4:
        fail(f"image_size must be a multiple of 4 and at least 16, got {config.image_size}")
    if config.photo_size is not None and config.photo_size < config.image_size:
        fail(f"photo_size must be at least image_size ({config.image_size}), got {config.photo_size}")
    from keras_style.vgg import keras_layer_name  # cheap: no TensorFlow import
    for name in config.content_layers + config.style_layers:
        try:
            keras_layer_name(name)
        except UserError as exc:
            fail(str(exc))
    _check_paths(config, fail)


def _check_final_learning_rate(config, fail):
    if (config.final_learning_rate is None) != (config.final_steps == 0):
        fail("final_learning_rate and final_steps go together: give both or neither")
    if config.final_learning_rate is not None and config.final_learning_rate <= 0:
        fail(f"final_learning_rate must be positive, got {config.final_learning_rate}")
    if config.final_steps < 0:
        fail(f"final_steps must not be negative, got {config.final_steps}")
    if config.final_steps and config.max_steps is not None and config.final_steps >= config.max_steps:
        fail(f"final_steps ({config.final_steps}) must be fewer than max_steps ({config.max_steps})")


def _check_metanet_values(config, fail):
    if config.color_match is not None and not 0 <= config.color_match <= 1:
        fail(f"color_match must be from 0 to 1 (or null for none), got {config.color_match}")
    if config.metanet_learning_rate_scale <= 0:
        fail(f"metanet_learning_rate_scale must be positive, got {config.metanet_learning_rate_scale}")
    for key in ("steps_per_style", "styles_per_batch_min"):
        if getattr(config, key) < 1:
            fail(f"{key} must be at least 1, got {getattr(config, key)}")
    for key in ("styles_before_batching", "kernel_rank"):
        if getattr(config, key) < 0:
            fail(f"{key} must not be negative, got {getattr(config, key)}")
    if config.styles_per_batch_max < config.styles_per_batch_min:
        fail(f"styles_per_batch_max ({config.styles_per_batch_max}) is below styles_per_batch_min "
             f"({config.styles_per_batch_min})")
    if config.styles_per_batch_max > config.batch_size:
        fail(f"styles_per_batch_max ({config.styles_per_batch_max}) exceeds batch_size "
             f"({config.batch_size}): a batch cannot mix more styles than it has photos")


def _check_paths(config, fail):
    if config.method == "transform":
        if not config.style_image:
            fail("style_image is required to train a per-style network")
        if not is_url(config.style_image) and not Path(config.style_image).is_file():
            fail(f"style_image {config.style_image}: no such file")
        for key in ("style_data", "val_styles"):
            if getattr(config, key):
                fail(f"{key} is for method metanet; a per-style network learns style_image")
    else:
        if config.style_image:
            fail("style_image is for method transform; a MetaNet learns the styles in style_data")
        if not config.style_data:
            fail("style_data (a folder of style images) is required for method metanet")
        for folder in config.style_data:
            _check_image_folder("style_data", folder, fail)
        if config.val_styles:
            _check_image_folder("val_styles", config.val_styles, fail)
    if config.init_from and not Path(config.init_from).is_file():
        fail(f"init_from {config.init_from}: no such file")
    if not Path(config.train_data).is_dir():
        fail(f"train_data {config.train_data}: no such folder")
    if config.val_images and not Path(config.val_images).exists():
        fail(f"val_images {config.val_images}: no such file or folder")
    if config.loss_model_file and not Path(config.loss_model_file).is_file():
        fail(f"loss_model_file {config.loss_model_file}: no such file")


def _check_image_folder(key, folder, fail):
    from keras_style.images import find_images  # cheap: no TensorFlow import
    if not Path(folder).is_dir():
        fail(f"{key} {folder}: no such folder")
    if not find_images(folder):
        fail(f"{key} {folder}: no image files found")


def is_url(text):
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https")


def fetch_style_image(location, cache_dir=STYLE_CACHE):
    """A local path for `location`: itself, or the cached download of an http(s) URL."""
    if not is_url(location):
        return Path(location)
    suffix = Path(urllib.parse.urlparse(location).path).suffix or ".jpg"
    target = Path(cache_dir) / (hashlib.sha256(location.encode()).hexdigest()[:16] + suffix)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(location, timeout=60) as response, open(partial, "wb") as out:
            out.write(response.read())
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"style_image {location}: download failed ({exc})") from None
    partial.replace(target)
    return target


def describe(config):
    """The config as a plain dict (for logs and the exported model's metadata)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}

