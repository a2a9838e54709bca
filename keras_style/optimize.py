"""Optimisation-based style transfer (Gatys et al.): optimise one image against VGG19 losses.

L-BFGS runs in SciPy (float64 at the boundary) around one compiled TensorFlow function that
returns the loss and its gradient; Adam runs entirely in TensorFlow.
"""
import time
from dataclasses import dataclass

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf

from keras_style import images, losses, precision
from keras_style.errors import UserError
from keras_style.progress import Progress
from keras_style.stylize import normalised_weights
from keras_style.vgg import build_vgg

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
COARSEST = 256      # the smallest scale of the default coarse-to-fine pyramid (longer side)
FINAL_SHARE = 0.3   # the share of the iterations spent at the full size
MIN_SIDE = 16       # VGG19 pools four times before relu5_1


@dataclass
class GatysOptions:
    iterations: int = 100
    optimizer: str = "lbfgs"
    learning_rate: float = 5.0
    content_weight: float = 1.0
    style_weight: float = 3e5
    tv_weight: float = 1e-2
    init: str = "content"
    content_layers: tuple = DEFAULT_CONTENT_LAYERS
    style_layers: tuple = DEFAULT_STYLE_LAYERS
    precision: str = "auto"
    seed: int = 0

    def validate(self):
        if self.iterations < 1:
            raise UserError(f"--iterations must be at least 1, got {self.iterations}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise UserError(f"--optimizer must be lbfgs or adam, got {self.optimizer!r}")
        if self.init not in ("content", "noise"):
            raise UserError(f"--init must be content or noise, got {self.init!r}")
        precision.normalise_setting(self.precision, "--precision")
        for name in ("content_weight", "style_weight", "tv_weight", "learning_rate"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must not be negative")


class GatysTransfer:
    """Holds the loss network; `run` stylises one photo with one or more (blended) styles."""

    def __init__(self, options, vgg_weights=None):
        options.validate()
        self.options = options
        policy = precision.chosen("optimisation", options.precision).policy
        self.vgg = build_vgg(list(options.content_layers) + list(options.style_layers),
                             weights=vgg_weights, dtype=policy)
        self.weights = losses.LossWeights(options.content_weight, options.style_weight,
                                          options.tv_weight)

    def style_targets(self, styles, style_weights):
        """Blended Gram targets: sum_i w_i ||G - G_i||^2 has the gradient of ||G - sum_i w_i G_i||^2."""
        blend = {name: 0.0 for name in self.options.style_layers}
        for style, weight in zip(styles, style_weights):
            features = self.vgg(style[None])
            for name in blend:
                blend[name] += weight * losses.gram_matrix(features[name])
        return blend

    def content_targets(self, content):
        features = self.vgg(content[None])
        return {name: features[name] for name in self.options.content_layers}

    def run(self, content, styles, style_weights=None, on_step=None, start=None, iterations=None):
        """Return the stylised image. `on_step(iteration, image, parts)` is called each iteration.

        `start`: the image to start from (default: `options.init`); `iterations`: how many
        (default: `options.iterations`). Ctrl-C stops early and returns the best image so far.
        """
        style_weights = normalised_weights(style_weights or [1.0] * len(styles), len(styles))
        content_targets = self.content_targets(content)
        style_grams = self.style_targets(styles, style_weights)
        value_and_grad = self._compile(content.shape, content_targets, style_grams)
        start = self._initial_image(content) if start is None else start.astype(np.float32)
        iterations = iterations or self.options.iterations
        if self.options.optimizer == "lbfgs":
            return _run_lbfgs(value_and_grad, start, iterations, on_step)
        return _run_adam(value_and_grad, start, self.options, iterations, on_step)

    def run_coarse_to_fine(self, content, styles, style_weights=None, plan=None, on_scale=None,
                           on_step=None):
        """`run` over a pyramid: `plan` is [(longer side, iterations), ...], coarse to fine, the
        last at `content`'s own size. Each scale starts from the previous result, enlarged; the
        photo and the styles are scaled with it, so the painting's strokes keep their size relative
        to the picture. `on_scale(index, shape, iterations)` is called as each scale starts.
        """
        plan = plan or [(max(content.shape[:2]), self.options.iterations)]
        result = None
        for index, (size, iterations) in enumerate(plan):
            scaled = images.resize_to_longer(content, size)
            start = None if result is None else images.resize(result, scaled.shape[:2])
            if on_scale:
                on_scale(index, scaled.shape, iterations)
            result = self.run(scaled, [images.resize_to_longer(s, size) for s in styles], style_weights,
                              on_step, start, iterations)
        return result

    def _initial_image(self, content):
        if self.options.init == "content":
            return content.astype(np.float32)
        rng = np.random.default_rng(self.options.seed)
        return rng.uniform(0, 255, content.shape).astype(np.float32)

    def _compile(self, shape, content_targets, style_grams):
        vgg, weights = self.vgg, self.weights

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], jit_compile=False)
        def value_and_grad(image):
            with tf.GradientTape() as tape:
                tape.watch(image)
                batch = image[None]
                parts = losses.perceptual_loss(batch, vgg(batch), content_targets, style_grams,
                                               weights)
            return parts, tape.gradient(parts["total"], image)

        return value_and_grad


class _Best:
    """Remembers the lowest-loss image seen, so an interrupted run still returns something good."""

    def __init__(self, image):
        self.image, self.loss = image, np.inf

    def offer(self, image, loss):
        if np.isfinite(loss) and loss < self.loss:
            self.image, self.loss = image.copy(), loss


def _parts_to_floats(parts):
    return {k: float(v) for k, v in parts.items()}


def _run_lbfgs(value_and_grad, start, iterations, on_step):
    shape = start.shape
    best = _Best(start)
    last = {}

    def fun(flat):
        image = flat.reshape(shape).astype(np.float32)
        parts, grad = value_and_grad(tf.constant(image))
        last.update(_parts_to_floats(parts))
        best.offer(image, last["total"])
        return np.float64(last["total"]), grad.numpy().astype(np.float64).ravel()

    iteration = [0]

    def callback(flat):
        iteration[0] += 1
        if on_step:
            on_step(iteration[0], flat.reshape(shape).astype(np.float32), dict(last))

    bounds = scipy.optimize.Bounds(np.zeros(start.size), np.full(start.size, 255.0))
    try:
        scipy.optimize.minimize(fun, start.astype(np.float64).ravel(), jac=True, method="L-BFGS-B",
                                bounds=bounds, callback=callback,
                                options={"maxiter": iterations, "maxfun": iterations * 2,
                                         "maxcor": 10, "ftol": 0.0, "gtol": 0.0})
    except KeyboardInterrupt:
        print("\ninterrupted: keeping the best image so far")
    return best.image


def _run_adam(value_and_grad, start, options, iterations, on_step):
    image = tf.Variable(start)
    optimizer = keras.optimizers.Adam(learning_rate=options.learning_rate)
    best = _Best(start)
    try:
        for iteration in range(1, iterations + 1):
            parts, grad = value_and_grad(tf.convert_to_tensor(image))
            parts = _parts_to_floats(parts)
            best.offer(image.numpy(), parts["total"])
            optimizer.apply_gradients([(grad, image)])
            image.assign(tf.clip_by_value(image, 0.0, 255.0))
            if on_step:
                on_step(iteration, image.numpy(), parts)
    except KeyboardInterrupt:
        print("\ninterrupted: keeping the best image so far")
    final, _ = value_and_grad(tf.convert_to_tensor(image))
    best.offer(image.numpy(), float(final["total"]))
    return best.image


def coarse_to_fine_plan(image_size, iterations, scales="auto", final_share=FINAL_SHARE, shorter_ratio=1.0):
    """[(longer side, iterations), ...] from coarse to `image_size`.

    `scales`: "auto" (halvings of `image_size` down to `COARSEST`), "none" (one scale) or a list
    of coarser sizes. The full size gets `final_share` of the iterations (at least one), the coarser
    sizes share the rest equally: an iteration at half the size costs a quarter. Sizes at which the
    shorter side (`shorter_ratio` x the longer) would be under `MIN_SIDE` are left out.
    """
    if scales == "auto":
        sizes, size = [], image_size // 2
        while size >= COARSEST:
            sizes.insert(0, size)
            size //= 2
    elif scales == "none":
        sizes = []
    else:
        sizes = sorted({int(s) for s in scales if int(s) < image_size})
    sizes = [size for size in sizes if round(size * shorter_ratio) >= MIN_SIDE]
    if not sizes or iterations < 2:
        return [(image_size, iterations)]
    final = min(iterations - 1, max(1, round(iterations * final_share)))
    coarse = [(iterations - final) // len(sizes)] * len(sizes)
    coarse[0] += iterations - final - sum(coarse)
    plan = [(size, count) for size, count in zip(sizes, coarse) if count] + [(image_size, final)]
    return plan


def stylize_with_optimisation(transfer, content, styles, style_weights=None, preserve_color=False,
                              on_step=None, plan=None, on_scale=None):
    """`transfer.run_coarse_to_fine`, with luminance-only transfer when `preserve_color` keeps the
    photo's colours."""
    if not preserve_color:
        return transfer.run_coarse_to_fine(content, styles, style_weights, plan, on_scale, on_step)
    gray_content = images.luminance_as_rgb(content)
    gray_styles = [images.luminance_as_rgb(s, like=content) for s in styles]
    recolour = (lambda i, img, parts: on_step(i, images.with_colours_of(img, images.resize(
        content, img.shape[:2])), parts)) if on_step else None
    result = transfer.run_coarse_to_fine(gray_content, gray_styles, style_weights, plan, on_scale, recolour)
    return images.with_colours_of(result, content)


class ProgressReporter:
    """Progress bar for optimisation, one per scale: iteration, loss parts and ETA; optional
    intermediate images every `save_every` iterations (counted over all scales)."""

    def __init__(self, iterations, save_every=0, save=None):
        self.total = iterations
        self.save_every, self.save = save_every, save
        self.started = time.perf_counter()
        self.iterations_done = 0
        self.bar, self.before_scale = None, 0
        self.scale_label = ""

    def start_scale(self, index, shape, iterations, count=1):
        if self.bar:
            self.bar.close()
        self.before_scale = self.iterations_done
        label = f"{shape[1]}x{shape[0]}" + (f" (scale {index + 1}/{count})" if count > 1 else "")
        self.bar = Progress(iterations, label=f"{label} iteration", log_seconds=10.0)

    def __call__(self, iteration, image, parts):
        if self.bar is None:
            self.start_scale(0, image.shape, self.total)
        self.iterations_done = self.before_scale + iteration
        self.bar.update(iteration, {k: parts[k] for k in ("total", "content", "style", "tv")})
        if self.save and self.save_every and self.iterations_done % self.save_every == 0:
            self.save(self.iterations_done, image)

    def close(self):
        if self.bar:
            self.bar.close()

    def seconds_per_iteration(self):
        return (time.perf_counter() - self.started) / max(1, self.iterations_done)
