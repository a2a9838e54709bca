"""Optimisers for the MetaNet, which treat its variables (`norm_val`) as a group of their own.

`Adagrad2` clips the MetaNet's gradients differently from everything else's; `MetaAdam` is Adam.
Both can also scale the group's learning rate (`norm_learning_rate_scale`): one step on a MetaNet
weight moves a generated kernel for every style at once, by up to the sum of the hidden units that
weight reads (they are all non-negative, so Adam's steps add up), far more than the same step moves
a transform network's own kernel.

The MetaNet writes the weights of the transform network, so a large gradient step on it changes
every convolution at once; the Keras MetaNet port found training only converged when those
gradients were held tightly (by norm and by value) while the transform network's own layers got a
looser elementwise clip. Keras 3 applies one clip to all variables (`_clip_gradients` sees no
variables), so Adagrad2 clips in `_backend_apply_gradients`, where gradients and variables
are still paired, and turns the base class's clipping off.
"""
import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="keras_style")

# The clip values of the Keras MetaNet port's Adagrad2 training phase.
PORT_CLIPNORM = 2.0
PORT_CLIPVALUE = 5.0
PORT_CLIPVALUE2 = 2.0


def variable_path(variable):
    """A Keras variable's path (`layer/name`); plain tf.Variables fall back to their name."""
    path = getattr(variable, "path", None) or variable.name
    return path[:-2] if path.endswith(":0") else path


class _MetaNetGroup:
    """Mixin for a Keras optimiser: the `norm_val` group and its learning-rate scale."""

    def _init_group(self, norm_val, norm_learning_rate_scale):
        if norm_learning_rate_scale <= 0:
            raise ValueError(f"norm_learning_rate_scale must be positive, got {norm_learning_rate_scale}")
        self.norm_val = [p if isinstance(p, str) else variable_path(p) for p in norm_val]
        self.norm_learning_rate_scale = float(norm_learning_rate_scale)

    def in_norm_group(self, variable):
        path = variable_path(variable)
        return any(path.startswith(prefix) for prefix in self.norm_val)

    def build(self, variables):
        super().build(variables)
        # update_step may see the backend's variables rather than these; their index is shared.
        self._norm_group_indices = {self._get_variable_index(v) for v in variables if self.in_norm_group(v)}

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self._norm_group_indices:
            learning_rate = learning_rate * self.norm_learning_rate_scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "norm_val": list(self.norm_val),
                "norm_learning_rate_scale": self.norm_learning_rate_scale}


@register
class MetaAdam(_MetaNetGroup, keras.optimizers.Adam):
    """Adam whose `norm_val` variables (the MetaNet's) learn at `norm_learning_rate_scale` times the
    learning rate. `norm_val` is as in `Adagrad2`."""

    def __init__(self, learning_rate=0.001, norm_val=(), norm_learning_rate_scale=1.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._init_group(norm_val, norm_learning_rate_scale)


@register
class Adagrad2(_MetaNetGroup, keras.optimizers.Adagrad):
    """Adagrad with per-group gradient clipping.

    Variables in `norm_val` (the MetaNet's) have each gradient clipped to norm `clipnorm` (per
    variable, as Keras' `clipnorm`), then elementwise to [-clipvalue, clipvalue]; every other
    variable's gradient is clipped elementwise to [-clipvalue2, clipvalue2]. A clip that is None
    or 0 is off.

    `norm_val` holds variable paths (`[v.path for v in metanet.trainable_variables]`) or prefixes
    of them; a variable is in the group when its path starts with one of the entries (this project
    names every MetaNet layer `metanet_...`, so `["metanet_"]` also works). Variables themselves
    are accepted and stored as their paths, so the config stays a list of strings.

    Unlike the Keras base class, clipnorm and clipvalue may both be set (they apply in that order);
    `global_clipnorm` and gradient accumulation are not supported. The group's learning rate is
    `norm_learning_rate_scale` times the rest's (1: the port's Adagrad2).
    """

    def __init__(self, learning_rate=0.001, norm_val=(), clipnorm=None, clipvalue=None,
                 clipvalue2=10.0, norm_learning_rate_scale=1.0, **kwargs):
        if kwargs.get("global_clipnorm") is not None:
            raise ValueError("Adagrad2 clips per variable group; global_clipnorm is not supported")
        if kwargs.get("gradient_accumulation_steps"):
            raise ValueError("Adagrad2 does not support gradient_accumulation_steps")
        super().__init__(learning_rate=learning_rate, **kwargs)
        # Set after the base constructor, which refuses clipnorm and clipvalue together.
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.clipvalue2 = clipvalue2
        self._init_group(norm_val, norm_learning_rate_scale)

    def _clip_gradient(self, gradient, variable):
        if gradient is None:
            return None
        if self.in_norm_group(variable):
            if self.clipnorm:
                gradient = self._clip_by_norm(gradient)
            if self.clipvalue:
                gradient = ops.clip(gradient, -self.clipvalue, self.clipvalue)
        elif self.clipvalue2:
            gradient = ops.clip(gradient, -self.clipvalue2, self.clipvalue2)
        return gradient

    def _backend_apply_gradients(self, grads, trainable_variables):
        grads = [self._clip_gradient(g, v) for g, v in zip(grads, trainable_variables)]
        return super()._backend_apply_gradients(grads, trainable_variables)

    def _clip_gradients(self, grads):
        return grads  # already clipped per group in _backend_apply_gradients

    def get_config(self):
        return {**super().get_config(), "clipvalue2": self.clipvalue2}


def adagrad2_for(config, task, learning_rate=None, clipnorm=PORT_CLIPNORM, clipvalue=PORT_CLIPVALUE,
                 clipvalue2=PORT_CLIPVALUE2):
    """The Adagrad2 a MetaNet training task uses: `learning_rate` (default `config.learning_rate`;
    a schedule works too), the MetaNet's variables (the tight-clip group) from
    `task.metanet_variable_names()`, an iterable of variable paths or path prefixes (see
    `keras_style.metanet.metanet_variable_names`), and `config.metanet_learning_rate_scale`.
    """
    return Adagrad2(**_group_arguments(config, task, learning_rate), clipnorm=clipnorm, clipvalue=clipvalue,
                    clipvalue2=clipvalue2)


def meta_adam_for(config, task, learning_rate=None):
    """The `MetaAdam` of a MetaNet training task, as `adagrad2_for` (no clipping)."""
    return MetaAdam(**_group_arguments(config, task, learning_rate))


def _group_arguments(config, task, learning_rate):
    return {"learning_rate": learning_rate or config.learning_rate,
            "norm_val": list(task.metanet_variable_names()),
            "norm_learning_rate_scale": config.metanet_learning_rate_scale}
