"""The Johnson et al. transform network: photo [0, 255] -> stylised image [0, 255].

Reflection padding, convolution, instance normalisation and ReLU; a 9x9 stem, two stride-2
convolutions, residual blocks, nearest-neighbour upsampling + convolution (no transposed
convolutions: they checkerboard) and a 9x9 output convolution. Any input size works: the input is
mirror-padded to a multiple of 4 and the output cropped back.
"""
import keras
import numpy as np
from keras import layers

from keras_style.layers import CropLike, InstanceNormalization, PadToMultiple, ReflectionPad2D


def conv_block(x, filters, kernel_size, strides=1, upsample=False, norm=True, relu=True, name=None):
    """[upsample] -> reflection pad -> conv -> [instance norm] -> [ReLU]."""
    if upsample:
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    x = ReflectionPad2D(kernel_size // 2, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel_size, strides=strides, name=f"{name}_conv")(x)
    if norm:
        x = InstanceNormalization(name=f"{name}_norm")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def residual_block(x, channels, name):
    y = conv_block(x, channels, 3, name=f"{name}_a")
    y = conv_block(y, channels, 3, relu=False, name=f"{name}_b")
    return layers.Add(name=f"{name}_add")([x, y])


def build_transform_net(base=16, residual_blocks=5, residual_width=None, name="transform_net"):
    """Widths: `base` at full resolution, 2 x base at half, `residual_width` (default 4 x base) at a
    quarter, where a channel costs a sixteenth of one at full resolution."""
    residual_width = residual_width or base * 4
    photo = keras.Input((None, None, 3), name="photo")
    x = PadToMultiple(4, name="pad_to_4")(photo)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit")(x)
    x = conv_block(x, base, 9, name="stem")
    x = conv_block(x, base * 2, 3, strides=2, name="down1")
    x = conv_block(x, residual_width, 3, strides=2, name="down2")
    for i in range(residual_blocks):
        x = residual_block(x, residual_width, name=f"res{i + 1}")
    x = conv_block(x, base * 2, 3, upsample=True, name="up1")
    x = conv_block(x, base, 3, upsample=True, name="up2")
    x = conv_block(x, 3, 9, norm=False, relu=False, name="out")
    # Back to pixel values in float32: bfloat16 has only 8 significant bits.
    x = layers.Rescaling(127.5, offset=127.5, dtype="float32", name="to_pixels")(x)
    image = CropLike(dtype="float32", name="crop")([x, photo])
    return keras.Model(photo, image, name=name)


def widened(fresh, trained):
    """A layer's weights for a network wider than the one `trained` (the layer's arrays there) came
    from: `fresh` (the wider layer's own random start) with `trained` in its leading corner, and zero
    where an old output channel reads a new input channel. The old channels then compute exactly what
    they did, the new ones compute something, and the zero weights learn from it from step 0 (a new
    channel silenced by a zero norm scale instead would sit at ReLU's kink and never learn)."""
    grown = []
    for new, old in zip(fresh, trained):
        new, old = np.array(new, copy=True), np.asarray(old)
        new[tuple(slice(0, n) for n in old.shape)] = old
        if new.ndim == 4:  # a convolution kernel: (rows, columns, inputs, outputs)
            new[:, :, old.shape[2]:, :old.shape[3]] = 0
        grown.append(new)
    return grown
