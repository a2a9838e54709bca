"""The MetaNet's training styles: what the network reads of each painting and what the loss compares
its results with, for thousands of paintings.

Read once, when training starts, for every style: a small centre view (what the MetaNet sees, as
uint8) and the quantiles of its colours (the colour term's target, a few KB). The Gram matrices the
style loss needs are 2.4 MB a painting in float32 at 512 px (10 GB for 4,459), so they are made when
a style is first trained on, with one VGG pass, and kept in files beside the checkpoints: the upper
triangle of each Gram, divided by its norm, in float16 (0.6 MB a painting), the norms and the
channel means (for the mean/std loss) in float32. A resumed run, or a new run on the same
paintings (even a copy of them at the same path), finds them there.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_style import data, images, losses
from keras_style.errors import UserError
from keras_style.progress import Progress

COLOUR_DIRECTIONS = 32
COLOUR_LEVELS = 64


class StyleSet:
    """The readable images of `files` as training styles (`len(self)` of them, in `self.files`).

    `view_side`: the side of the square views (`self.views`, (N, side, side, 3) uint8);
    `style_size`: the longer side at which each painting is judged: at most that, or with `enlarge`
    exactly that, smaller paintings enlarged as the yardstick judges them; `vgg`: a `vgg.build_vgg`
    model with `style_layers` among its outputs; `summarise(views)`: what the MetaNet reads of the views
    besides themselves (`self.statistics`), computed with them. `cache_dir`: where the views,
    colours, statistics and the Gram file are kept (None: in memory only).
    """

    def __init__(self, files, vgg, style_layers, style_size, view_side, summarise=None, cache_dir=None,
                 skipped=None, enlarge=False):
        self.style_layers, self.style_size, self.enlarge = tuple(style_layers), style_size, enlarge
        self.directions = losses.colour_directions(COLOUR_DIRECTIONS)
        settings = [style_size, view_side, self.style_layers, vgg.layers[-1].dtype_policy.name]
        key = _key(files, vgg, settings + (["enlarged"] if enlarge else []))
        read = cache_dir and Path(cache_dir) / f"style_set-{key}.npz"
        if read and read.is_file():
            self._load(read, skipped)
        else:
            self.files, self.views, self.colours, unreadable = self._read(files, view_side, skipped)
            self.statistics = summarise(self.views) if summarise else np.zeros((len(self.files), 0))
            if read:
                self._save(read, unreadable)
        self._grams = _GramFile(self._channels(vgg), len(self.files),
                                cache_dir and Path(cache_dir) / f"style_grams-{key}.npy")
        self._features = tf.function(lambda image: self._targets_of(vgg(image)),
                                     input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)])

    def __len__(self):
        return len(self.files)

    def _save(self, path, unreadable):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part.npz")
        np.savez(partial, files=np.array(self.files), views=self.views, colours=self.colours,
                 statistics=self.statistics, unreadable=np.array(unreadable, dtype=str).reshape(-1, 2))
        partial.replace(path)

    def _load(self, path, skipped):
        with np.load(path) as saved:
            self.files = [str(f) for f in saved["files"]]
            self.views, self.colours = saved["views"], saved["colours"]
            self.statistics = saved["statistics"]
            for file, reason in saved["unreadable"]:
                if skipped is not None:
                    skipped.add(str(file), str(reason))
        print(f"read {len(self.files)} styles' views and colours from {path}")

    def _read(self, files, view_side, skipped):
        kept, views, colours, unreadable = [], [], [], []
        progress = Progress(len(files), label="reading style", log_seconds=10.0)
        for i, path in enumerate(files):
            try:
                image = self._painting(path)
            except UserError as exc:
                unreadable.append((path, str(exc)))
                if skipped is not None:
                    skipped.add(path, str(exc))
                continue
            kept.append(path)
            views.append(np.asarray(data.centre_square(image, view_side)).round().astype(np.uint8))
            # Some 20,000 pixels rank a painting's colours as well as all of them, 8x faster.
            stride = max(1, round((image.shape[0] * image.shape[1] / 20000) ** 0.5))
            colours.append(np.asarray(losses.colour_quantiles(image[None], self.directions, COLOUR_LEVELS,
                                                              stride))[0])
            progress.update(i + 1)
        progress.close()
        if not kept:
            raise UserError(f"none of the {len(files)} style images is readable")
        return kept, np.stack(views), np.stack(colours), unreadable

    def _painting(self, path):
        if self.enlarge:
            return images.load_painting_at(path, self.style_size)
        return images.load_style_image(path, self.style_size, verbose=False)

    def _targets_of(self, features):
        return {n: (losses.gram_matrix(features[n]), losses.mean_std(features[n])[0]) for n in self.style_layers}

    def _channels(self, vgg):
        return [int(vgg.output[n].shape[-1]) for n in self.style_layers]

    def targets(self, ids):
        """The loss targets of styles `ids`: per style layer, the Gram matrices (len(ids), C, C) and
        channel means (len(ids), C), float32."""
        for i in ids:
            if not self._grams.ready(i):
                image = self._painting(self.files[i])
                computed = self._features(tf.constant(image[None]))
                self._grams.store(i, [[np.asarray(t)[0] for t in computed[n]] for n in self.style_layers])
        rows = [self._grams.load(i) for i in ids]
        return {n: tuple(np.stack([row[k][part] for row in rows]) for part in range(2))
                for k, n in enumerate(self.style_layers)}

    @property
    def prepared(self):
        """How many styles' Gram targets are made."""
        return self._grams.count_ready()


def _key(files, vgg, settings):
    """Names the cache files after everything their contents depend on: the paintings' bytes, not
    their modification times, which a copy of the data at the same path (another machine, a restored
    backup) renews. The paths stay in the key: the cache lists the files it was made from."""
    described = [(str(Path(f).resolve()), hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in files]
    weights = [float(np.asarray(w, np.float32).ravel()[:8].sum()) for w in vgg.weights[:4]]
    text = json.dumps([described, settings, weights])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _GramFile:
    """Per style, per layer: the Gram matrix (its upper triangle divided by its norm, float16; the
    norm, float32) and the channel means (float32)."""

    def __init__(self, channels, rows, path=None):
        self.channels = channels
        self.sizes = [c * (c + 1) // 2 for c in channels]
        shapes = {"triangles": (np.float16, sum(self.sizes)),
                  # the last column marks a row complete: it is written after the rest of the row
                  "norms": (np.float32, len(channels) + 1),
                  "means": (np.float32, sum(channels))}
        if path is None:
            for name, (dtype, width) in shapes.items():
                setattr(self, name, np.zeros((rows, width), dtype))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        paths = {name: path.with_name(f"{path.stem}-{name}.npy") for name in shapes}
        mode = "r+" if all(p.is_file() for p in paths.values()) else "w+"
        for name, (dtype, width) in shapes.items():
            setattr(self, name, np.lib.format.open_memmap(paths[name], mode, dtype, (rows, width)))

    def ready(self, row):
        return bool(self.norms[row, -1])

    def count_ready(self):
        return int(np.count_nonzero(self.norms[:, -1]))

    def store(self, row, targets):
        """`targets`: per layer, (Gram (C, C), means (C,))."""
        start = mean_start = 0
        for layer, ((gram, mean), size) in enumerate(zip(targets, self.sizes)):
            norm = max(float(np.linalg.norm(gram)), 1e-30)
            self.triangles[row, start:start + size] = gram[np.triu_indices(len(gram))] / norm
            self.norms[row, layer] = norm
            self.means[row, mean_start:mean_start + len(mean)] = mean
            start, mean_start = start + size, mean_start + len(mean)
        self.norms[row, -1] = 1.0

    def load(self, row):
        """Per layer, (Gram (C, C), means (C,)) float32."""
        targets, start, mean_start = [], 0, 0
        for channels, size, norm in zip(self.channels, self.sizes, self.norms[row, :-1]):
            gram = np.zeros((channels, channels), np.float32)
            upper = np.triu_indices(channels)
            gram[upper] = self.triangles[row, start:start + size].astype(np.float32) * norm
            gram.T[upper] = gram[upper]
            targets.append((gram, np.array(self.means[row, mean_start:mean_start + channels])))
            start, mean_start = start + size, mean_start + channels
        return targets
