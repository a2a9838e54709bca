"""Which precision runs fastest on this hardware, per kind of work.

bfloat16 halves the memory traffic of every activation, and where the hardware multiplies in it
natively (x86 CPUs with AVX-512 BF16 or AMX, NVIDIA GPUs of compute capability 8.0 or more, Arm
CPUs with the BF16 extension) it roughly doubles the matrix throughput: VGG19's forward and
backward pass at 512x512 takes 1.1 s instead of 3.5 s on a 2-core AMD EPYC with AVX-512 BF16.
Everywhere else bfloat16 is emulated: on a 2-core Intel Xeon with AVX-512 but no BF16, an L-BFGS
iteration at 512x512 takes 10.0 s against 2.6 s in float32, a training step 10.3 s against 2.2 s,
stylising a 512x512 photo 0.35 s against 0.10 s; users measured backward passes 7-14x slower on
AVX2 CPUs. So `auto` picks bfloat16 only where it is native, for every kind of work, and float32
elsewhere; `bfloat16` and `float32` force one.

Callers ask once per kind of work (`choose`), and `announce` says what was chosen and why.
"""
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_style.errors import UserError

SETTINGS = ("auto", "bfloat16", "float32")
# What the precision is chosen for. Training and optimisation run backward passes, stylising only
# forward ones; all three follow the same rule today, measured per kind (see the module docstring).
WORK = ("training", "optimisation", "stylising")
NATIVE_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 /proc/cpuinfo "flags"
NATIVE_ARM_FEATURES = ("bf16",)                 # aarch64 /proc/cpuinfo "Features"
MIN_GPU_CAPABILITY = (8, 0)                     # Ampere and newer: bfloat16 tensor cores


@dataclass(frozen=True)
class Hardware:
    """What the precision is chosen from: whether bfloat16 is native, and a phrase saying why."""
    native_bfloat16: bool
    description: str


@dataclass(frozen=True)
class Precision:
    dtype: str   # "bfloat16" or "float32"
    reason: str

    @property
    def policy(self):
        """The Keras dtype policy to build networks under: float32 weights, bfloat16 arithmetic."""
        return "mixed_bfloat16" if self.dtype == "bfloat16" else "float32"

    @property
    def is_bfloat16(self):
        return self.dtype == "bfloat16"


def cpu_features(cpuinfo_text):
    """The CPU feature words of a /proc/cpuinfo text (x86 "flags", Arm "Features"), of its first CPU."""
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def describe_cpu(features, machine=None):
    """A `Hardware` for a CPU with these /proc/cpuinfo feature words."""
    machine = (machine or platform.machine()).lower()
    wanted = NATIVE_ARM_FEATURES if machine in ("aarch64", "arm64") else NATIVE_CPU_FLAGS
    native = [flag for flag in wanted if flag in features]
    if native:
        return Hardware(True, f"this CPU has native bfloat16 ({', '.join(native)})")
    known = [flag for flag in ("avx512f", "avx2", "fma", "asimd") if flag in features]
    having = f"; it has {', '.join(known)}" if known else ""
    return Hardware(False, f"this CPU has no native bfloat16 (no {' or '.join(wanted)}{having}), "
                           "where bfloat16 is emulated and slower than float32")


def describe_gpu(capability):
    """A `Hardware` for a GPU of CUDA compute capability `capability`, e.g. (8, 6)."""
    text = ".".join(str(n) for n in capability)
    if tuple(capability) >= MIN_GPU_CAPABILITY:
        return Hardware(True, f"the GPU (compute capability {text}) has bfloat16 tensor cores")
    return Hardware(False, f"the GPU (compute capability {text}) has no bfloat16 tensor cores "
                           f"(they need {MIN_GPU_CAPABILITY[0]}.{MIN_GPU_CAPABILITY[1]} or more)")


def detect(cpuinfo_path="/proc/cpuinfo"):
    """The hardware TensorFlow will run on: the first GPU if there is one, else the CPU."""
    capability = _gpu_capability()
    if capability:
        return describe_gpu(capability)
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        return Hardware(False, "this CPU's features are unknown (no /proc/cpuinfo); float32 is the safe choice")
    return describe_cpu(cpu_features(text))


def _gpu_capability():
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("compute_capability") or (0, 0)


def choose(work, setting="auto", hardware=None):
    """The `Precision` for `work` (one of WORK) under `setting` (one of SETTINGS)."""
    if work not in WORK:
        raise ValueError(f"unknown kind of work {work!r}")
    setting = normalise_setting(setting)
    if setting != "auto":
        return Precision(setting, "as asked")
    hardware = hardware or _detected()
    if hardware.native_bfloat16:
        return Precision("bfloat16", hardware.description)
    return Precision("float32", hardware.description)


def normalise_setting(setting, what="precision"):
    """`auto`, `bfloat16` or `float32` from a setting (configs also say true/false); else a UserError."""
    aliases = {True: "bfloat16", False: "float32", "true": "bfloat16", "false": "float32",
               "mixed_bfloat16": "bfloat16"}
    key = setting.lower() if isinstance(setting, str) else setting
    value = aliases.get(key, key)
    if value not in SETTINGS:
        raise UserError(f"{what} must be one of {', '.join(SETTINGS)}, got {setting!r}")
    return value


_hardware = None
_announced = set()


def _detected():
    global _hardware
    if _hardware is None:
        _hardware = detect()
    return _hardware


def announce(work, precision, stream=None):
    """Say once per process and kind of work what precision was chosen, and why."""
    if (work, precision) in _announced:
        return
    _announced.add((work, precision))
    print(f"precision: {precision.dtype} for {work} ({precision.reason})", file=stream or sys.stdout)


def chosen(work, setting="auto", stream=None):
    """`choose`, then `announce`: what the command lines and trainers call."""
    precision = choose(work, setting)
    announce(work, precision, stream)
    return precision


class policy_scope:
    """Builds networks under the Keras dtype policy `name`, restoring the previous one after."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        import keras
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)

    def __exit__(self, *exc):
        import keras
        keras.config.set_dtype_policy(self.previous)


def recast(model, dtype_of, class_of=type):
    """A copy of a functional model (nested ones included) whose layers take the dtype policy
    `dtype_of(layer)` names, with the same weights cast to it; not trainable. `class_of(layer)` may
    swap a layer's class for a compatible one."""
    import keras
    import numpy as np

    def clone(layer):
        return class_of(layer).from_config({**layer.get_config(), "dtype": dtype_of(layer)})

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for target, source in zip(copy.weights, model.weights):
        target.assign(np.asarray(keras.ops.convert_to_numpy(source)).astype(target.dtype))
    copy.trainable = False
    return copy


def runs_in_float32(model):
    """Whether every layer of `model` (nested models included) computes in float32."""
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in _leaf_layers(model))


def _leaf_layers(model):
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
