"""The MetaNet end to end: train.py on tiny images and styles (random VGG weights), then eval.py.

Training runs in subprocesses (it sets a global dtype policy); eval.py runs in this process through
`cli.eval_main`, which keeps the many small eval checks fast.
"""
import re
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_style import cli, metanet, stylize
from keras_style.config import ConfigError, load_config
from test_cli import assert_one_line_error, photo, run

MODEL = "models/mn/mn.keras"
CONFIG = """method: metanet
naming: mn
style_data: styles
train_data: photos
image_size: 32
batch_size: 2
max_steps: 2
log_every: 2
save_every: 2
base: 2
residual_width: 4
residual_blocks: 1
steps_per_style: 1
styles_before_batching: 1
styles_per_batch_min: 1
styles_per_batch_max: 2
optimizer: adagrad2
style_weight: 1.0e-5
mixed_precision: true
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MetaNet trained two steps (one style, then a batch of mixed styles), then resumed."""
    work = tmp_path_factory.mktemp("metanet")
    for i in range(3):
        photo(work / "photos" / f"p{i}.jpg", (48, 40), seed=i)
        photo(work / "styles" / f"s{i}.png", (36, 44), seed=10 + i)
    (work / "styles" / "broken.jpg").write_text("not an image")
    (work / "m.yml").write_text(CONFIG)
    first = run("train.py", "-c", "m.yml", cwd=work)
    assert first.returncode == 0, first.stderr + first.stdout
    resumed = run("train.py", "-c", "m.yml", "--set", "max_steps=3", cwd=work)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    photo(work / "s1.jpg", (30, 30), seed=21)
    photo(work / "s2.jpg", (40, 24), seed=22)
    return work, first, resumed


def evaluate(work, monkeypatch, capsys, *args):
    """eval.py in this process: (exit status, stdout, stderr)."""
    monkeypatch.chdir(work)
    code = cli.eval_main([str(a) for a in args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def files_of(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_train_exports_checkpoints_logs_and_skips_broken_styles(trained):
    work, first, resumed = trained
    run_dir = work / "models" / "mn"
    assert (run_dir / "mn.keras").is_file() and (run_dir / "checkpoint").is_file()
    assert "warning: skipping" in first.stderr and "broken.jpg" in first.stderr
    events = b"".join(p.read_bytes() for p in run_dir.glob("events.out.tfevents.*"))
    for tag in (b"metanet/params_norm", b"preview", b"skipped/nonfinite_steps", b"loss/style"):
        assert tag in events
    assert "resumed from step 2" in resumed.stdout


def test_eval_applies_a_style_at_any_size(trained, monkeypatch, capsys):
    work, _, _ = trained
    photo(work / "in" / "wide.jpg", (50, 21), seed=3)
    photo(work / "in" / "tiny.png", (5, 3), seed=4)
    result = evaluate(work, monkeypatch, capsys, "--model_file", MODEL, "--image_file", "in",
                      "--style_image", "s1.jpg")
    assert result.returncode == 0, result.stderr
    assert "encoded style s1.jpg" in result.stdout
    assert Image.open(work / "generated" / "res_[mn+s1]_[wide].jpg").size == (50, 21)
    assert Image.open(work / "generated" / "res_[mn+s1]_[tiny].jpg").size == (5, 3)


def test_saved_style_blends_and_reproduces(trained, monkeypatch, capsys):
    work, _, _ = trained
    base = ["--model_file", MODEL, "--image_file", "photos/p0.jpg"]
    for style in ("s1", "s2"):
        result = evaluate(work, monkeypatch, capsys, *base, "--style_image", f"{style}.jpg",
                          "--save_style", f"v/{style}.npy", "--output", f"o/{style}.png")
        assert result.returncode == 0, result.stderr
    result = evaluate(work, monkeypatch, capsys, *base, "--style_image", "s1.jpg", "s2.jpg",
                      "--style_weights", "1", "3", "--save_style", "v/blend.npy", "--output", "o")
    assert result.returncode == 0, result.stderr
    assert (work / "o" / "res_[mn+s1+s2]_[p0].jpg").is_file()
    v1, v2, blend = (np.load(work / "v" / f"{n}.npy") for n in ("s1", "s2", "blend"))
    np.testing.assert_allclose(blend, 0.25 * v1 + 0.75 * v2, rtol=1e-5, atol=1e-9)
    assert not np.allclose(v1, v2)

    result = evaluate(work, monkeypatch, capsys, *base, "--style_file", "v/s1.npy",
                      "--output", "o/from_file.png")
    assert result.returncode == 0, result.stderr
    same = [np.asarray(Image.open(work / "o" / n)) for n in ("s1.png", "from_file.png")]
    np.testing.assert_array_equal(*same)


def test_each_style_gives_one_result_per_style_and_a_gallery(trained, monkeypatch, capsys):
    work, _, _ = trained
    result = evaluate(work, monkeypatch, capsys, "--model_file", MODEL, "--image_file", "photos/p0.jpg",
                      "photos/p1.jpg", "--style_image", "s1.jpg", "s2.jpg", "--each_style",
                      "--output", "each", "--gallery", "each/gallery.png")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in (work / "each").iterdir()}
    assert {f"res_[mn+s{i}]_[p{j}].jpg" for i in (1, 2) for j in (0, 1)} | {"gallery.png"} == names
    first, second = (np.asarray(Image.open(work / "each" / f"res_[mn+s{i}]_[p0].jpg"), np.float32) for i in (1, 2))
    assert np.abs(first - second).mean() > 0.5  # each its own style, not their blend twice
    assert Image.open(work / "each" / "gallery.png").size[0] > 3 * 40


def test_solid_colour_style_and_photo_give_finite_images(trained):
    from keras_style import stylize
    work, _, _ = trained
    stylizer = stylize.MetaNetStylizer(stylize.load_model(work / MODEL), work / MODEL)
    for value in (0.0, 255.0):
        vector = stylizer.encode(np.full((40, 30, 3), value, np.float32))
        assert np.isfinite(vector).all()
        stylizer.use_style([vector], "solid")
        result = stylizer(np.full((24, 20, 3), 255.0 - value, np.float32))
        assert result.shape == (24, 20, 3) and np.isfinite(result).all()


@pytest.mark.parametrize("size", [(8000, 8000), (9, 12)])
def test_huge_and_tiny_style_images_are_rescaled_and_told(trained, monkeypatch, capsys, size):
    told = f"encoded style extreme.png (read at {stylize.STYLE_SIDE} px on its shorter side"
    work, _, _ = trained
    Image.new("RGB", size, (40, 90, 160)).save(work / "extreme.png")
    result = evaluate(work, monkeypatch, capsys, "--model_file", MODEL, "--image_file", "photos/p0.jpg",
                      "--style_image", "extreme.png", "--output", "o/extreme.png")
    assert result.returncode == 0, result.stderr
    assert told in result.stdout
    assert np.asarray(Image.open(work / "o" / "extreme.png")).std() > 0


def test_per_style_model_refuses_a_style(trained, monkeypatch, capsys):
    from keras_style.transform import build_transform_net
    work, _, _ = trained
    build_transform_net(2, 1).save(work / "plain.keras")
    result = evaluate(work, monkeypatch, capsys, "--model_file", "plain.keras",
                      "--image_file", "photos/p0.jpg", "--style_image", "s1.jpg")
    assert_one_line_error(result, "plain.keras", "ignores styles")


@pytest.mark.parametrize("make, args, fragments", [
    (None, [], ("mn.keras", "needs a style")),
    (lambda w: np.save(w / "short.npy", np.zeros(7, np.float32)),
     ["--style_file", "short.npy"], ("short.npy", "holds 7 numbers")),
    (lambda w: np.save(w / "words.npy", np.array(["a", "b"])),
     ["--style_file", "words.npy"], ("words.npy", "not numbers")),
    (lambda w: (w / "text.npy").write_text("hello"),
     ["--style_file", "text.npy"], ("text.npy", "not a style vector")),
    (None, ["--style_file", "missing.npy"], ("missing.npy", "no such style file")),
    (None, ["--style_image", "s1.jpg", "--style_file", "x.npy"], ("not both",)),
    (None, ["--style_image", "s1.jpg", "--style_weights", "1", "2"], ("--style_weights",)),
    (None, ["--style_image", "s1.jpg", "--save_style", "s1.txt"], ("--save_style", ".npy")),
    (lambda w: np.save(w / "in.npy", np.zeros(7, np.float32)),
     ["--style_file", "in.npy", "--save_style", "in.npy"], ("--save_style", "overwrite an input")),
    (None, ["--style_image", "s1.jpg", "--output", "s1.jpg"], ("overwrite an input",)),
    (None, ["--each_style", "--style_image", "s1.jpg", "s2.jpg", "--style_weights", "1", "2"], ("--each_style",)),
])
def test_eval_errors_are_one_line_and_write_nothing(trained, monkeypatch, capsys, make, args,
                                                    fragments):
    work, _, _ = trained
    if make:
        make(work)
    before = files_of(work)
    result = evaluate(work, monkeypatch, capsys, "--model_file", MODEL, "--image_file",
                      "photos/p0.jpg", *args)
    assert_one_line_error(result, *fragments)
    assert files_of(work) == before


def test_style_options_without_a_model(tmp_path, monkeypatch, capsys):
    photo(tmp_path / "p.jpg")
    result = evaluate(tmp_path, monkeypatch, capsys, "--image_file", "p.jpg", "--style_file", "s.npy")
    assert_one_line_error(result, "--model_file")


def metanet_config(tmp_path, extra, batch_size=8):
    """A metanet config in `tmp_path` (paths in configs are relative to the working folder)."""
    photo(tmp_path / "photos" / "a.jpg")
    photo(tmp_path / "styles" / "s.jpg")
    (tmp_path / "empty").mkdir(exist_ok=True)
    photo(tmp_path / "one.jpg")
    (tmp_path / "c.yml").write_text("method: metanet\nnaming: x\ntrain_data: photos\n"
                                    f"batch_size: {batch_size}\n" + extra)
    return tmp_path / "c.yml"


def tiny_metanet_config(tmp_path, monkeypatch, extra, batch_size=8):
    """A tiny MetaNet config loaded in `tmp_path`, with random VGG weights."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_STYLE_VGG19", "random")
    return load_config(metanet_config(tmp_path, "style_data: styles\nimage_size: 16\nbase: 2\n"
                                      "residual_width: 2\nresidual_blocks: 1\n" + extra, batch_size))


@pytest.mark.parametrize("extra, fragment", [
    ("", "style_data (a folder of style images) is required"),
    ("style_data: nowhere\n", "style_data nowhere: no such folder"),
    ("style_data: empty\n", "style_data empty: no image files"),
    ("style_data: styles\nstyle_image: one.jpg\n", "style_image is for method transform"),
    ("style_data: styles\nval_styles: empty\n", "val_styles empty"),
    ("style_data: styles\nstyles_per_batch_min: 5\nstyles_per_batch_max: 3\n", "below styles_per_batch_min"),
    ("style_data: styles\nstyles_per_batch_max: 9\n", "exceeds batch_size"),
    ("style_data: styles\nstyles_per_batch_min: 0\n", "styles_per_batch_min must be at least 1"),
    ("style_data: styles\nsteps_per_style: 0\n", "steps_per_style must be at least 1"),
    ("style_data: styles\nresidual_width: 0\n", "residual_width must be at least 1"),
    ("style_data: styles\nstyles_before_batching: -1\n", "must not be negative"),
    ("style_data: styles\ncolor_weight: -2\n", "color_weight must not be negative"),
    ("style_data: styles\ncolor_match: 1.5\n", "color_match must be from 0 to 1 (or null for none), got 1.5"),
    ("style_data: styles\ncolor_match: -0.5\n", "color_match must be from 0 to 1"),
    ("style_data: [styles, 3]\n", "style_data must be a non-empty list of folders"),
    ("style_data: styles\nkernel_rank: -1\n", "kernel_rank must not be negative"),
    ("style_data: styles\nstyle_per_batch_max: 4\n", "did you mean 'styles_per_batch_max'"),
    ("style_data: styles\nresidual_width: wide\n", "residual_width must be an integer"),
    ("style_data: styles\nmetanet_learning_rate_scale: 0\n", "metanet_learning_rate_scale must be positive"),
])
def test_metanet_config_errors(tmp_path, monkeypatch, extra, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(metanet_config(tmp_path, extra))


def test_metanet_config_defaults_and_transform_only_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(metanet_config(tmp_path, "style_data: styles\n"))
    assert (config.steps_per_style, config.styles_before_batching) == (20, 30)
    assert (config.styles_per_batch_min, config.styles_per_batch_max) == (4, 8)
    assert config.metanet_learning_rate_scale == 1.0
    (tmp_path / "t.yml").write_text("naming: t\ntrain_data: photos\nstyle_image: one.jpg\n"
                                    "optimizer: adagrad2\n")
    with pytest.raises(ConfigError, match="adagrad2"):
        load_config(tmp_path / "t.yml")
    (tmp_path / "t.yml").write_text("naming: t\ntrain_data: photos\nstyle_image: one.jpg\n"
                                    "metanet_learning_rate_scale: 0.1\n")
    with pytest.raises(ConfigError, match="metanet_learning_rate_scale is for method metanet"):
        load_config(tmp_path / "t.yml")
    (tmp_path / "t.yml").write_text("naming: t\ntrain_data: photos\nstyle_image: one.jpg\n"
                                    "color_weight: 0.5\n")
    with pytest.raises(ConfigError, match="color_weight is for method metanet"):
        load_config(tmp_path / "t.yml")
    (tmp_path / "t.yml").write_text("naming: t\ntrain_data: photos\nstyle_image: one.jpg\n"
                                    "enlarge_styles: true\n")
    with pytest.raises(ConfigError, match="enlarge_styles is for method metanet"):
        load_config(tmp_path / "t.yml")
    (tmp_path / "t.yml").write_text("naming: t\ntrain_data: photos\nstyle_image: one.jpg\n"
                                    "style_data: styles\n")
    with pytest.raises(ConfigError, match="style_data is for method metanet"):
        load_config(tmp_path / "t.yml")


def test_train_metanet_config_error_is_one_line(tmp_path):
    metanet_config(tmp_path, "style_data: empty\n")
    result = run("train.py", "-c", "c.yml", cwd=tmp_path)
    assert_one_line_error(result, "style_data empty")
    assert not (tmp_path / "models").exists()


def test_shipped_metanet_config_is_valid(monkeypatch):
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    if not (root.parent / "shared" / "data" / "style" / "train").is_dir():
        pytest.skip("../shared data not present")
    config = load_config(root / "conf" / "metanet.yml")
    assert config.method == "metanet" and config.val_styles.endswith("style/val")
    assert not any("style/val" in folder for folder in config.style_data)


def test_nonfinite_loss_skips_the_update(tmp_path, monkeypatch):
    """A batch whose loss is NaN changes no weight and is counted; a good one then trains."""
    from keras_style import data, training
    config = tiny_metanet_config(tmp_path, monkeypatch, "styles_per_batch_min: 1\nstyles_per_batch_max: 2\n"
                                 "optimizer: adagrad2\nstyle_layers: [relu1_2]\n", batch_size=2)
    task = training.MetaNetTask(config, data.SkippedFiles())
    trainer = training.Trainer(config, task, training.make_optimizer(config, task))
    dataset = task.dataset()
    step = trainer.compiled_step(dataset)
    batch = next(iter(dataset))
    before = [np.array(v) for v in trainer.variables]
    parts, applied = step({**batch, "photos": batch["photos"] * np.nan})
    assert not bool(applied) and int(trainer.nonfinite.numpy()) == 1
    assert all(np.array_equal(b, np.array(v)) for b, v in zip(before, trainer.variables))
    parts, applied = step(batch)
    assert bool(applied) and np.isfinite(float(parts["total"]))
    assert any(not np.array_equal(b, np.array(v)) for b, v in zip(before, trainer.variables))


def test_metanet_optimizer_scales_the_metanets_learning_rate(tmp_path, monkeypatch):
    """Adam on the MetaNet's variables at learning_rate x metanet_learning_rate_scale, the rest at
    learning_rate: a first Adam step moves every weight by about its rate."""
    from keras_style import data, metanet, optimizers, training
    config = tiny_metanet_config(tmp_path, monkeypatch, "style_layers: [relu1_2]\nlearning_rate: 0.01\n"
                                 "metanet_learning_rate_scale: 0.1\n")
    task = training.MetaNetTask(config, data.SkippedFiles())
    trainer = training.Trainer(config, task, training.make_optimizer(config, task))
    assert isinstance(trainer.optimizer, optimizers.MetaAdam)
    before = [np.array(v) for v in trainer.variables]
    dataset = task.dataset()
    trainer.compiled_step(dataset)(next(iter(dataset)))
    in_metanet = {id(v) for v in task.metanet.trainable_variables}
    layout = metanet.ParamLayout.of_model(task.transform)
    outputs = {id(w) for layer in metanet.output_layers(task.metanet, layout)
               for w in layer.trainable_weights}
    for start, v in zip(before, trainer.variables):
        moved = np.abs(np.array(v) - start).max()
        if id(v) in in_metanet and id(v) not in outputs:
            assert moved == 0.0, v.path  # behind the zero-initialised output weights: no gradient yet
            continue
        expected = 0.001 if id(v) in in_metanet else 0.01
        assert moved == pytest.approx(expected, rel=0.05), v.path


def test_distances_loss_pairs_each_photo_with_its_own_style(tmp_path, monkeypatch):
    from keras_style import data, images, losses, training
    config = tiny_metanet_config(tmp_path, monkeypatch, "loss_form: distances\nstyles_per_batch_min: 2\n"
                                 "styles_per_batch_max: 2\nstyles_before_batching: 0\n"
                                 "style_layers: [relu1_1, relu2_1]\nstyle_weight: 0.5\nstyle_size: 32\n",
                                 batch_size=3)
    Image.new("RGB", (40, 30), (250, 20, 20)).save(tmp_path / "styles" / "red.png")
    task = training.MetaNetTask(config, data.SkippedFiles())
    batch = next(iter(task.dataset()))
    generated = np.random.default_rng(0).uniform(0, 255, batch["photos"].shape).astype(np.float32)
    monkeypatch.setattr(task, "transform", lambda inputs, training: tf.constant(generated))
    parts = task.losses(batch)

    def features(x):
        return {n: np.asarray(f) for n, f in task.vgg(tf.constant(x)).items()}

    # Each photo's target is its style's whole image at style_size on the longer side.
    wholes = [features(images.load_style_image(path, config.style_size)[None]) for path in task.styles.files]
    out, photos = features(generated), features(batch["photos"])
    ids = np.asarray(batch["style_ids"])[np.asarray(batch["style_index"])]
    style = sum(np.mean([float(losses.gram_distance(out[n][i:i + 1], losses.gram_matrix(wholes[j][n])))
                         for i, j in enumerate(ids)]) for n in ("relu1_1", "relu2_1"))
    assert float(parts["style"]) == pytest.approx(0.5 * style, rel=1e-3)
    content = float(losses.content_distance(out["relu4_2"], photos["relu4_2"]))
    assert float(parts["content"]) == pytest.approx(content, rel=1e-3)


def test_learning_curve_judges_each_painting_at_the_yardsticks_size(tmp_path, monkeypatch):
    """quality.py scales every painting to 512 px on its longer side, small ones up: so does the
    learning curve (it read 0.524 where quality.py read 0.541 while it judged them at their own size)."""
    from keras_style import data, training
    photo(tmp_path / "vstyles" / "small.png", (32, 16), seed=3)
    config = tiny_metanet_config(tmp_path, monkeypatch, "val_styles: vstyles\neval_every: 1\n")
    task = training.MetaNetTask(config, data.SkippedFiles())
    assert [s.shape for s in task.validation.styles] == [(256, 512, 3)]


def test_style_set_targets_are_the_whole_paintings_and_kept_for_the_next_run(tmp_path, monkeypatch, capsys):
    """Views, colours and statistics are read once; Gram targets and means are made on first use,
    stored compactly (float16 Grams) and found again by a new run on the same paintings."""
    from keras_style import data, images, losses, metanet, training
    config = tiny_metanet_config(tmp_path, monkeypatch, "loss_form: distances\nstyle_size: 40\n"
                                 "style_layers: [relu1_1, relu2_1]\nstyles_before_batching: 0\n")
    photo(tmp_path / "styles" / "t.jpg", (52, 28), seed=5)
    (tmp_path / "styles" / "broken.png").write_text("no")
    task = training.MetaNetTask(config, data.SkippedFiles())
    assert len(task.styles) == 2 and task.styles.prepared == 0
    targets = task.styles.targets(np.array([1, 0, 1]))
    assert task.styles.prepared == 2
    for k, path in enumerate([task.styles.files[i] for i in (1, 0, 1)]):
        image = images.load_style_image(path, config.style_size)
        assert max(image.shape[:2]) == 40
        features = task.vgg(image[None])
        for name in config.style_layers:
            gram, mean = targets[name]
            np.testing.assert_allclose(gram[k], losses.gram_matrix(features[name])[0], rtol=2e-3,
                                       atol=2e-3 * np.abs(gram[k]).max())
            want_mean, want_std = losses.mean_std(features[name])
            np.testing.assert_allclose(mean[k], want_mean[0], rtol=1e-5)
            _, std = training._mean_and_std(gram[k:k + 1], mean[k:k + 1])
            np.testing.assert_allclose(std[0], want_std[0], rtol=2e-2, atol=1e-2 * float(want_std.numpy().max()))
        view = data.centre_square(images.load_style_image(path, config.style_size), metanet.ENCODE_SIDE)
        np.testing.assert_allclose(task.styles.views[[1, 0, 1][k]], view, atol=0.51)
    capsys.readouterr()
    again = training.MetaNetTask(config, data.SkippedFiles())
    assert "read 2 styles' views and colours from" in capsys.readouterr().out
    assert again.styles.prepared == 2 and again.styles.files == task.styles.files
    np.testing.assert_array_equal(again.styles.views, task.styles.views)
    np.testing.assert_array_equal(again.styles.statistics, task.styles.statistics)
    np.testing.assert_array_equal(again.styles.targets(np.array([0]))["relu2_1"][0], targets["relu2_1"][0][1:2])
    ids = np.concatenate([np.asarray(b["style_ids"]) for b in again.dataset().take(20)])
    assert set(ids) == {0, 1}


def stylised(work, monkeypatch, capsys, photo_path, label, *args):
    """eval.py's float32 result for `photo_path` with `args`, as an array (kept as check/<label>.png)."""
    out = work / "check" / f"{label}.png"
    result = evaluate(work, monkeypatch, capsys, *args, "--image_file", photo_path, "--precision", "float32",
                      "--output", out)
    assert result.returncode == 0, result.stderr
    return np.asarray(Image.open(out), np.float32)


def test_a_per_style_network_warm_started_from_the_metanet_begins_as_its_style(trained, monkeypatch, capsys):
    """init_from a MetaNet: the per-style network starts as the one the MetaNet generates for the
    painting (one step at a negligible rate changes nothing visible), in its shape, not as a random one."""
    work, _, _ = trained
    plain = ("naming: {name}\nstyle_image: s1.jpg\ntrain_data: photos\nimage_size: 32\nbatch_size: 2\n"
             "max_steps: 1\nlearning_rate: 1.0e-9\nresidual_blocks: 1\n")
    (work / "warm.yml").write_text(plain.format(name="warm") + f"base: 5\ninit_from: {MODEL}\n")
    (work / "cold.yml").write_text(plain.format(name="cold") + "base: 2\nresidual_width: 4\n")
    outputs = {name: run("train.py", "-c", f"{name}.yml", cwd=work) for name in ("warm", "cold")}
    for result in outputs.values():
        assert result.returncode == 0, result.stderr + result.stdout
    assert ("starting from the network mn.keras generates for s1.jpg (base 2, residual width 4, "
            "1 residual blocks)") in outputs["warm"].stdout
    photo(work / "check" / "c.jpg", (48, 40), seed=30)
    results = {label: stylised(work, monkeypatch, capsys, "check/c.jpg", label, *args)
               for label, args in (("metanet", ["--model_file", MODEL, "--style_image", "s1.jpg"]),
                                   ("warm", ["--model_file", "models/warm/warm.keras"]),
                                   ("cold", ["--model_file", "models/cold/cold.keras"]))}
    warm = np.abs(results["warm"] - results["metanet"]).mean()
    cold = np.abs(results["cold"] - results["metanet"]).mean()
    assert warm < 2.0 and cold > 10 * warm, (warm, cold)


def test_a_metanet_continues_from_a_saved_one(trained, monkeypatch, capsys):
    """init_from a MetaNet file (checkpoints gone): training starts from its weights, not random
    ones (one step at a negligible rate leaves its results as they were), also when the config
    adds style output convolutions (their changes start at zero) or residual blocks (they start as
    the identity); another shape is one clear error. `relu_before_output: false` builds the
    transform without the ReLU before its output convolution, `demodulate: true` with demodulated
    kernels, each said when the saved network was built otherwise; `color_match` and `keep_palette`
    add their layers, measured rather than learned."""
    work, _, _ = trained
    later = ("max_steps=1", "learning_rate=1.0e-9", "styles_before_batching=0", "mixed_precision=false")
    outputs = {name: run("train.py", "-c", "m.yml", "--set", f"naming={name}", *later, *extra, cwd=work)
               for name, extra in (("again", [f"init_from={MODEL}"]), ("fresh", ["seed=5"]),
                                   ("grown", [f"init_from={MODEL}", "style_output_convs=true",
                                              "residual_blocks=3"]),
                                   ("bare", [f"init_from={MODEL}", "relu_before_output=false"]),
                                   ("demod", [f"init_from={MODEL}", "demodulate=true"]),
                                   ("palette", [f"init_from={MODEL}", "color_match=0.5",
                                                "keep_palette=true"]))}
    for result in outputs.values():
        assert result.returncode == 0, result.stderr + result.stdout
    assert "starting from the MetaNet mn.keras" in outputs["again"].stdout
    assert "new in this config" not in outputs["again"].stdout and "note:" not in outputs["again"].stdout
    assert "note: mn.keras was built with demodulate: false" in outputs["demod"].stdout
    assert re.search(r"new in this config, from their initial values: .*metanet_out_conv_kernel_change"
                     r".*res3_b_norm", outputs["grown"].stdout)
    photo(work / "check" / "m.jpg", (48, 40), seed=31)
    results = {name: stylised(work, monkeypatch, capsys, "check/m.jpg", name, "--model_file",
                              f"models/{name}/{name}.keras", "--style_image", "s1.jpg")
               for name in ("mn", "again", "fresh", "grown")}
    again, grown, fresh = (np.abs(results[name] - results["mn"]).mean() for name in ("again", "grown", "fresh"))
    assert again < 2.0 and grown < 2.0 and fresh > 5 * max(again, grown), (again, grown, fresh)
    for name, relu, demodulated in (("again", True, False), ("bare", False, False), ("demod", True, True)):
        _, transform = metanet.metanet_halves(stylize.load_model(work / "models" / name / f"{name}.keras"))
        assert metanet.has_relu_before_output(transform) == relu
        assert metanet.is_demodulated(transform) == demodulated
    _, transform = metanet.metanet_halves(stylize.load_model(work / "models" / "palette" / "palette.keras"))
    assert [layer.name for layer in transform.layers[-3:-1]] == [metanet.COLOUR_NAME, metanet.PALETTE_NAME]
    assert "new in this config" not in outputs["palette"].stdout
    kept = stylised(work, monkeypatch, capsys, "check/m.jpg", "palette", "--model_file",
                    "models/palette/palette.keras", "--style_image", "s1.jpg")
    assert np.isfinite(kept).all() and kept.std() > 1.0
    wider = run("train.py", "-c", "m.yml", "--set", "naming=wider", "residual_width=6", f"init_from={MODEL}",
                cwd=work)
    assert_one_line_error(wider, "its MetaNet has another shape than this config's")
