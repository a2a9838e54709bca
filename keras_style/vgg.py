"""The VGG19 loss network: weight resolution, preprocessing inside, named feature outputs.

Layers may be named as in the papers (`relu4_2`, `conv4_2`) or as in Keras (`block4_conv2`); the
model returns a dict keyed by the names it was asked for, and stops at the deepest one.
"""
import os
import re
from pathlib import Path

import keras
import numpy as np

from keras_style.errors import UserError
from keras_style.layers import VGGPreprocess

WEIGHTS_ENV = "KERAS_STYLE_VGG19"
WEIGHTS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RANDOM = "random"  # untrained weights: for tests and dry runs only

_PAPER_NAME = re.compile(r"^(?:relu|conv)([1-5])_([1-4])$")
_KERAS_NAME = re.compile(r"^block([1-5])_conv([1-4])$")
_CONVS_PER_BLOCK = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}


def keras_layer_name(name):
    """`relu4_2`, `conv4_2` or `block4_conv2` -> `block4_conv2`; anything else is a UserError."""
    match = _PAPER_NAME.match(name) or _KERAS_NAME.match(name)
    if match:
        block, conv = int(match.group(1)), int(match.group(2))
        if conv <= _CONVS_PER_BLOCK[block]:
            return f"block{block}_conv{conv}"
    raise UserError(f"unknown VGG19 layer {name!r} (use names like relu1_1 ... relu5_4 "
                    "or block1_conv1 ... block5_conv4)")


def resolve_weights(explicit=None):
    """Where the ImageNet weights come from: a file path, 'imagenet' (Keras download) or 'random'."""
    candidate = explicit or os.environ.get(WEIGHTS_ENV)
    if candidate:
        if candidate == RANDOM:
            return RANDOM
        path = Path(candidate).expanduser()
        if not path.is_file():
            source = "--vgg_weights/loss_model_file" if explicit else WEIGHTS_ENV
            raise UserError(f"{path}: VGG19 weights file not found (from {source})")
        return str(path)
    bundled = PROJECT_ROOT / "pretrained" / WEIGHTS_FILENAME
    if bundled.is_file():
        return str(bundled)
    return "imagenet"


_base_models = {}


def _load_vgg19(weights):
    if weights not in _base_models:
        try:
            model = keras.applications.VGG19(include_top=False, input_shape=(None, None, 3),
                                             weights=None if weights == RANDOM else weights)
        except Exception as exc:
            raise UserError(_weights_help(weights, exc)) from None
        if weights == RANDOM:
            _set_fixed_random_weights(model)
        _base_models[weights] = model
    return _base_models[weights]


def _set_fixed_random_weights(model, seed=0):
    """Glorot-uniform kernels and zero biases from a fixed seed. The random VGG is built once per
    process, by whatever asks first under whatever random state that caller left: without this,
    the same test would see other weights depending on which tests ran before it."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            receptive = np.prod(kernel.shape[:-2])
            limit = np.sqrt(6.0 / (receptive * (kernel.shape[-2] + kernel.shape[-1])))
            layer.set_weights([rng.uniform(-limit, limit, kernel.shape).astype(kernel.dtype),
                               np.zeros_like(bias)])


def _weights_help(weights, exc):
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if weights == "imagenet":
        return ("cannot download the VGG19 ImageNet weights (" + reason + "); download "
                f"{WEIGHTS_FILENAME} by hand and put it in pretrained/, or point {WEIGHTS_ENV} "
                "or --vgg_weights at it")
    return f"{weights}: not a VGG19 (no top) weights file ({reason})"


def build_vgg(layer_names, weights=None, dtype=None):
    """A frozen functional model: RGB [0, 255] -> {name: features} for the requested layers.

    `dtype` is a Keras dtype policy name (e.g. "mixed_bfloat16"); features come out in its compute
    dtype, so losses should cast them to float32.
    """
    wanted = {name: keras_layer_name(name) for name in layer_names}
    base = _load_vgg19(resolve_weights(weights))
    policy = dtype or keras.config.dtype_policy().name
    # The network is frozen, so mixed precision's float32 master weights buy nothing; storing them
    # in bfloat16 skips a cast of every kernel on every call (same numbers, ~25% faster forward).
    if policy == "mixed_bfloat16":
        policy = "bfloat16"
    image = keras.Input((None, None, 3), name="image")
    x = VGGPreprocess(dtype=policy, name="preprocess")(image)
    found = {}
    for layer in base.layers[1:]:
        clone = layer.__class__.from_config({**layer.get_config(), "dtype": policy})
        x = clone(x)
        clone.set_weights(layer.get_weights())
        found[layer.name] = x
        if set(wanted.values()) <= set(found):
            break
    model = keras.Model(image, {name: found[k] for name, k in wanted.items()}, name="vgg19_features")
    model.trainable = False
    return model
