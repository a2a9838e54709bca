"""Model files for serving and phones: a TensorFlow SavedModel (TF Serving, the TF.js converter) and
a TFLite flatbuffer, each loaded back and checked against the `.keras` model before it is kept.

Exports compute in float32 (TFLite has no bfloat16 kernels; a float16 TFLite file stores its weights
in float16 and computes in float32 on CPUs). A per-style network exports as photo -> image; a MetaNet
either whole ([photo, style image] -> image) or, given a style, as the transform for that one
encoded style (photo -> image, as small and fast as a per-style network).
"""
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_style import precision, stylize
from keras_style.layers import with_static_channels
from keras_style.errors import UserError
from keras_style.metanet import metanet_halves

# Exports must reproduce the .keras model: in float32 both, within this many levels of 255 at most
# (TFLite and TensorFlow pick other convolution kernels, so the sums round differently).
TOLERANCE = 1.0
FORMATS = ("saved_model", "tflite")
TFLITE_THREADS = 2  # as on a phone's big cores


class _UpSampling2D(keras.layers.UpSampling2D):
    """Keras's UpSampling2D, with its output's channel count kept in traced graphs (for TFLite)."""

    def call(self, x):
        return with_static_channels(super().call(x), x.shape[-1])


def _exportable_class(layer):
    return _UpSampling2D if type(layer) is keras.layers.UpSampling2D else type(layer)


class Exportable:
    """The function to export, `serve(photo[, style]) -> {"image": ...}`: float32 images in [0, 255],
    a batch of one, any size."""

    def __init__(self, model, params=None):
        self.model = precision.recast(model, lambda layer: "float32", _exportable_class)
        photo = tf.TensorSpec((1, None, None, 3), tf.float32, name="photo")
        if params is not None:
            params = tf.constant(np.asarray(params, np.float32).reshape(1, -1))
            self.signature = [photo]
            self.serve = lambda photo: {"image": self.model([photo, params], training=False)}
        elif len(model.inputs) == 2:
            self.signature = [photo, tf.TensorSpec((1, None, None, 3), tf.float32, name="style")]
            self.serve = lambda photo, style: {"image": self.model([photo, style], training=False)}
        else:
            self.signature = [photo]
            self.serve = lambda photo: {"image": self.model(photo, training=False)}

    def reference(self, *inputs):
        return np.asarray(self.serve(*[tf.constant(x[None], tf.float32) for x in inputs])["image"])[0]

    def write_saved_model(self, folder):
        archive = keras.export.ExportArchive()
        archive.track(self.model)
        archive.add_endpoint("serve", self.serve, input_signature=self.signature)
        archive.write_out(str(folder), verbose=False)
        return Path(folder)


def exportable(model, style_params=None):
    """What to export of a loaded model file: with `style_params`, a MetaNet's transform for that
    encoded style; otherwise the whole model."""
    if style_params is None:
        return Exportable(model)
    _, transform = metanet_halves(model)
    return Exportable(transform, style_params)


def save_saved_model(module, folder):
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    return module.write_saved_model(folder)


def save_tflite(module, path, float16=False):
    """A TFLite file converted from the module's SavedModel (Keras 3's own route to TFLite)."""
    with tempfile.TemporaryDirectory() as scratch:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(module.write_saved_model(Path(scratch) / "sm")))
        converter.experimental_enable_resource_variables = True
        if float16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        Path(path).write_bytes(converter.convert())
    return Path(path)


def run_saved_model(folder, *inputs):
    loaded = tf.saved_model.load(str(folder))
    serve = loaded.signatures["serving_default"]
    names = ["photo", "style"][:len(inputs)]
    out = serve(**{n: tf.constant(x[None], tf.float32) for n, x in zip(names, inputs)})
    return np.asarray(out["image"])[0]


def tflite_runner(path, *inputs):
    """A function running the TFLite model on `inputs` ((H, W, 3) float32 each), its input sizes
    set to theirs; returns the (H, W, 3) result."""
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=TFLITE_THREADS)
    details = interpreter.get_input_details()
    order = [next(i for i, name in enumerate(("photo", "style")) if name in d["name"]) for d in details]
    for detail, index in zip(details, order):
        interpreter.resize_tensor_input(detail["index"], (1,) + inputs[index].shape)
    interpreter.allocate_tensors()

    def run():
        for detail, index in zip(details, order):
            interpreter.set_tensor(detail["index"], inputs[index][None].astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    return run


def run_tflite(path, *inputs):
    return tflite_runner(path, *inputs)()


def check(name, got, want, tolerance=TOLERANCE):
    """(mean, max) absolute difference in levels of 255; over `tolerance` at most is a UserError."""
    difference = np.abs(np.clip(got, 0, 255) - np.clip(want, 0, 255))
    if not np.isfinite(got).all() or difference.max() > tolerance:
        raise UserError(f"{name}: the export differs from the model by up to {difference.max():.2f} "
                        f"of 255 (allowed {tolerance}); not kept")
    return float(difference.mean()), float(difference.max())


def timed_tflite(path, *inputs, repeats=5):
    """Median seconds of one run of the TFLite model on `inputs` (loaded and warmed up first)."""
    run = tflite_runner(path, *inputs)
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def export(module, folder, name, inputs, formats=FORMATS, float16=False):
    """Write the exports of `module` into `folder` and check each on `inputs`; returns a list of
    (path, mean difference, max difference). A failed check leaves nothing behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    want = module.reference(*inputs)
    written = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        if "saved_model" in formats:
            path = save_saved_model(module, Path(scratch) / "saved_model")
            written.append(("saved_model", path, check(f"{name} SavedModel", run_saved_model(path, *inputs), want)))
        if "tflite" in formats:
            path = save_tflite(module, Path(scratch) / f"{name}.tflite", float16)
            tolerance = 4 * TOLERANCE if float16 else TOLERANCE
            written.append(("tflite", path, check(f"{name} TFLite", run_tflite(path, *inputs), want, tolerance)))
        results = []
        for kind, path, (mean, largest) in written:
            target = folder / (f"{name}_saved_model" if kind == "saved_model" else path.name)
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(path), str(target))
            results.append((target, mean, largest))
    return results


def load(path):
    """A model file and whether it is a MetaNet."""
    model = stylize.load_model(path)
    return model, stylize.is_metanet(model)
