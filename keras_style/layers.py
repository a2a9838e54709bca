"""Serialisable Keras layers shared by the networks (registered under the `keras_style` package)."""
import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="keras_style")

# Caffe-style ImageNet means of the VGG19 weights, in BGR order.
VGG_BGR_MEAN = (103.939, 116.779, 123.68)


@register
class ReflectionPad2D(keras.layers.Layer):
    """Pads height and width by mirroring, so convolutions see no dark border."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@register
class InstanceNormalization(keras.layers.Layer):
    """Normalises each channel of each image over its spatial positions, with learned scale and offset.

    Statistics are computed in float32 even under a bfloat16 policy: bfloat16 means of 65k pixels
    would be off by whole percent.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, shape):
        channels = shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean, variance = ops.moments(x32, axes=[1, 2], keepdims=True)
        y = (x32 - mean) * ops.rsqrt(variance + self.epsilon)
        y = y * ops.cast(self.gamma, "float32") + ops.cast(self.beta, "float32")
        return ops.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@register
class PadToMultiple(keras.layers.Layer):
    """Mirror-pads the bottom and right edges so height and width are multiples of `multiple`."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = ops.shape(x)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="symmetric")

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + (-n) % self.multiple  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@register
class CropLike(keras.layers.Layer):
    """Crops `x` to the height and width of `reference` (undoes `PadToMultiple`)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, shapes):
        x_shape, ref_shape = shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@register
class VGGPreprocess(keras.layers.Layer):
    """RGB in [0, 255] to the BGR, mean-subtracted input the Caffe-trained VGG19 weights expect."""

    def call(self, x):
        mean = ops.convert_to_tensor(VGG_BGR_MEAN, dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) - mean
