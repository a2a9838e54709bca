"""End-to-end tests through train.py and eval.py on tiny images, with random VGG weights."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run(script, *args, cwd, env_extra=None):
    env = {**os.environ, "KERAS_STYLE_VGG19": "random", "TF_CPP_MIN_LOG_LEVEL": "3",
           **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def photo(path, size=(40, 32), seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny per-style model trained through train.py (shared by the tests below)."""
    work = tmp_path_factory.mktemp("train")
    for i in range(3):
        photo(work / "photos" / "sub" / f"p{i}.jpg", (48, 40), seed=i)
    (work / "photos" / "broken.jpg").write_text("not an image")
    photo(work / "style.png", (32, 32), seed=9)
    (work / "tiny.yml").write_text(
        "style_image: style.png\nnaming: tiny\ntrain_data: photos\nimage_size: 32\nbatch_size: 2\n"
        "max_steps: 4\nlog_every: 2\nsave_every: 2\nbase: 4\nresidual_blocks: 1\n"
        "style_weight: 1.0e+5\n")
    result = run("train.py", "-c", "tiny.yml", cwd=work)
    assert result.returncode == 0, result.stderr + result.stdout
    return work, result


def test_train_exports_model_checkpoints_and_events(trained):
    work, result = trained
    run_dir = work / "models" / "tiny"
    assert (run_dir / "tiny.keras").is_file()
    assert (run_dir / "checkpoint").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert "warning: skipping" in result.stderr and "broken.jpg" in result.stderr


def test_train_resumes_from_latest_checkpoint(trained):
    work, _ = trained
    result = run("train.py", "-c", "tiny.yml", "--set", "max_steps=6", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "resumed from step 4" in result.stdout


def test_train_warm_starts_from_another_styles_network(trained):
    """init_from a per-style model: its weights and shape (base 4 here, whatever the config says)."""
    work, _ = trained
    result = run("train.py", "-c", "tiny.yml", "--set", "naming=warm", "init_from=models/tiny/tiny.keras",
                 "base=7", "max_steps=1", "learning_rate=1.0e-9", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "starting from tiny.keras (base 4, residual width 16, 1 residual blocks)" in result.stdout
    import keras
    import keras_style.layers  # noqa: F401
    source, warm = (keras.saving.load_model(work / "models" / name / f"{name}.keras", compile=False)
                    for name in ("tiny", "warm"))
    for a, b in zip(source.get_weights(), warm.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    again = run("train.py", "-c", "tiny.yml", "--set", "naming=warm", "init_from=models/tiny/tiny.keras",
                "base=7", "max_steps=2", "learning_rate=1.0e-9", cwd=work)
    assert again.returncode == 0, again.stderr
    assert "resumed from step 1" in again.stdout and "it replaces init_from's weights" in again.stdout


def _grown_from_tiny(work, naming, *settings):
    """Train one step at a negligible rate from the tiny model with `settings`; (train.py's stdout,
    the tiny network, the grown one), both computing in float32."""
    result = run("train.py", "-c", "tiny.yml", "--set", f"naming={naming}", "init_from=models/tiny/tiny.keras",
                 *settings, "max_steps=1", "learning_rate=1.0e-9", cwd=work)
    assert result.returncode == 0, result.stderr
    import keras
    from keras_style import precision, stylize
    float32 = precision.choose("stylising", "float32")
    source, grown = (stylize.in_precision(keras.saving.load_model(work / "models" / name / f"{name}.keras",
                                                                  compile=False), float32)
                     for name in ("tiny", naming))
    return result.stdout, source, grown


def assert_same_function(a, b):
    x = np.random.default_rng(3).uniform(0, 255, (1, 36, 44, 3)).astype(np.float32)
    np.testing.assert_allclose(a(x).numpy(), b(x).numpy(), atol=1e-3)


def test_train_deepens_a_network_it_starts_from(trained):
    """extra_residual_blocks: the starting network's blocks plus new ones that begin as the identity,
    so the deeper network first computes what the starting one did."""
    from keras_style import metanet
    stdout, source, deeper = _grown_from_tiny(trained[0], "deeper", "extra_residual_blocks=2")
    assert "adding 2 residual blocks that start as the identity" in stdout
    assert metanet.transform_shape(deeper) == (4, 16, 3)
    assert_same_function(deeper, source)


def test_train_widens_a_network_it_starts_from(trained):
    """extra_base_channels / extra_residual_channels: a wider network whose old channels first compute
    what the starting network's did."""
    from keras_style import metanet
    stdout, source, wider = _grown_from_tiny(trained[0], "wider", "extra_base_channels=2",
                                             "extra_residual_channels=4")
    assert "widening to base 6, residual width 20" in stdout
    assert metanet.transform_shape(wider) == (6, 20, 1)
    assert_same_function(wider, source)


def test_eval_with_model_writes_default_output(trained):
    work, _ = trained
    photo(work / "in" / "a.jpg", (37, 29))
    photo(work / "in" / "b.png", (20, 50))
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "in", cwd=work)
    assert result.returncode == 0, result.stderr
    out = work / "generated" / "res_[tiny]_[a].jpg"
    assert Image.open(out).size == (37, 29)
    assert Image.open(work / "generated" / "res_[tiny]_[b].jpg").size == (20, 50)
    assert " s)" in result.stdout  # seconds per image


def test_training_precision_is_announced_and_exports_run_in_either(trained, tmp_path):
    """Whatever precision trained it, the file is saved with bfloat16 arithmetic where it may, and
    `--precision float32` runs it in float32 to the same picture, bfloat16's rounding apart."""
    work, result = trained
    assert re.search(r"^precision: (bfloat16|float32) for training \(this CPU has", result.stdout, re.M)
    photo(work / "prec" / "a.png", (36, 28), seed=4)
    outputs = {}
    for setting in ("bfloat16", "float32"):
        out = tmp_path / f"{setting}.png"
        ran = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "prec/a.png",
                  "--precision", setting, "--output", out, cwd=work)
        assert ran.returncode == 0, ran.stderr
        assert f"precision: {setting} for stylising (as asked)" in ran.stdout
        outputs[setting] = np.asarray(Image.open(out), np.float32)
    assert np.abs(outputs["bfloat16"] - outputs["float32"]).mean() < 0.02 * 255


def test_eval_max_size_and_tiny_photo(trained):
    work, _ = trained
    photo(work / "big.jpg", (80, 60))
    photo(work / "tiny.jpg", (5, 3))
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "big.jpg",
                 "tiny.jpg", "--max_size", "40", "--output", "out", cwd=work)
    assert result.returncode == 0, result.stderr
    assert Image.open(work / "out" / "res_[tiny]_[big].jpg").size == (40, 30)
    assert Image.open(work / "out" / "res_[tiny]_[tiny].jpg").size == (5, 3)


@pytest.mark.parametrize("model_text, fragment", [
    (None, "model file not found"),
    ("garbage", "not a keras-style model file"),
])
def test_eval_bad_model_file(tmp_path, model_text, fragment):
    photo(tmp_path / "p.jpg")
    if model_text is not None:
        (tmp_path / "m.keras").write_text(model_text)
    result = run("eval.py", "--model_file", "m.keras", "--image_file", "p.jpg", cwd=tmp_path)
    assert_one_line_error(result, "m.keras", fragment)
    assert result.stdout == ""  # not even the precision is announced before the error


def test_gatys_optimisation_through_eval(tmp_path):
    photo(tmp_path / "p.jpg", (40, 30))
    photo(tmp_path / "s1.jpg", (30, 30), seed=1)
    photo(tmp_path / "s2.jpg", (30, 30), seed=2)
    result = run("eval.py", "--image_file", "p.jpg", "--style_image", "s1.jpg", "s2.jpg",
                 "--style_weights", "2", "1", "--iterations", "4", "--image_size", "32",
                 "--optimizer", "adam", "--save_every", "2", "--preserve_color",
                 "--output", "res/out.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "res" / "out.png").size == (32, 24)
    assert (tmp_path / "res" / "out_0002.png").is_file()
    assert "s/iteration" in result.stdout


def test_gatys_lbfgs_default_output_name(tmp_path):
    photo(tmp_path / "p.jpg", (24, 24))
    photo(tmp_path / "s.jpg", (24, 24), seed=3)
    result = run("eval.py", "--image_file", "p.jpg", "--style_image", "s.jpg", "--iterations", "2",
                 "--image_size", "24", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "generated" / "res_[s]_[p].jpg").is_file()


def test_gatys_coarse_to_fine_shows_each_scale(tmp_path):
    photo(tmp_path / "p.jpg", (60, 40))
    photo(tmp_path / "s.jpg", (30, 30), seed=3)
    result = run("eval.py", "--image_file", "p.jpg", "--style_image", "s.jpg", "--iterations", "5",
                 "--image_size", "64", "--scales", "32", "--save_every", "2", "--output", "o.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "o.png").size == (64, 43)
    assert re.search(r"^32x22 \(scale 1/2\) iteration 3/3 ", result.stdout, re.M)
    assert re.search(r"^64x43 \(scale 2/2\) iteration 2/2 ", result.stdout, re.M)
    assert "5 iterations" in result.stdout
    assert sorted(p.name for p in tmp_path.glob("o_*.png")) == ["o_0002.png", "o_0004.png"]
    assert Image.open(tmp_path / "o_0002.png").size == (32, 22)  # intermediate images at their scale


def test_coarse_to_fine_plans():
    from keras_style.optimize import coarse_to_fine_plan as plan
    assert plan(512, 100) == [(256, 70), (512, 30)]
    assert plan(2048, 100) == [(256, 24), (512, 23), (1024, 23), (2048, 30)]
    assert plan(256, 100) == [(256, 100)] and plan(512, 100, "none") == [(512, 100)]
    assert plan(512, 1) == [(512, 1)] and plan(512, 2) == [(256, 1), (512, 1)]
    assert plan(512, 10, [128, 300, 900]) == [(128, 4), (300, 3), (512, 3)]
    assert plan(600, 10, shorter_ratio=0.05) == [(600, 10)]  # 300 x 15 would be too thin for VGG


@pytest.mark.parametrize("make, args, fragment", [
    (lambda d: None, ["--image_file", "missing.jpg", "--style_image", "s.jpg"], "missing.jpg"),
    (lambda d: (d / "e.jpg").write_bytes(b""), ["--image_file", "e.jpg", "--style_image", "s.jpg"],
     "empty"),
    (lambda d: (d / "t.jpg").write_text("hello"), ["--image_file", "t.jpg", "--style_image", "s.jpg"],
     "not a readable image"),
    (lambda d: (d / "dir").mkdir(), ["--image_file", "p.jpg", "--style_image", "dir"], "directory"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--output", "p.jpg"],
     "overwrite an input"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--output", "o.xyz"],
     "o.xyz"),
    (lambda d: None, ["--image_file", "p.jpg"], "--model_file"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--style_weights", "1", "2"],
     "--style_weights"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--iterations", "0"],
     "--iterations"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--scales", "600"],
     "--scales 600: give auto, none, or sizes in pixels from 16 to below --image_size"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--scales", "big"], "--scales big"),
    (lambda d: None, ["--image_file", "p.jpg", "--style_image", "s.jpg", "--style_layers", "fc7"],
     "fc7"),
    (lambda d: None, ["--image_file", "p.jpg", "--iterations", "x"], "invalid int"),
])
def test_eval_bad_input_is_one_line_exit_2(tmp_path, make, args, fragment):
    photo(tmp_path / "p.jpg")
    photo(tmp_path / "s.jpg", seed=1)
    make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = run("eval.py", *args, "--image_size", "24", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after  # nothing written or overwritten


def test_eval_output_in_missing_folder_is_created(tmp_path):
    photo(tmp_path / "p.jpg")
    photo(tmp_path / "s.jpg", seed=1)
    result = run("eval.py", "--image_file", "p.jpg", "--style_image", "s.jpg", "--iterations", "1",
                 "--image_size", "20", "--output", "new/deeper/out.jpg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "deeper" / "out.jpg").is_file()


@pytest.mark.parametrize("yaml_text, fragment", [
    ("naming: x\nstyle_image: s.jpg\ntrain_data: photos\nstyel_weight: 3\n", "did you mean 'style_weight'"),
    ("naming: x\nstyle_image: s.jpg\ntrain_data: photos\nbatch_size: four\n", "batch_size"),
    ("naming: x\nstyle_image: nope.jpg\ntrain_data: photos\n", "nope.jpg"),
    ("naming: x\nstyle_image: s.jpg\ntrain_data: nowhere\n", "nowhere"),
    ("naming: x\nstyle_image: s.jpg\ntrain_data: empty\n", "no image files"),
    ("style_image: s.jpg\ntrain_data: photos\n", "naming"),
    ("naming: [unclosed\n", "not valid YAML"),
])
def test_train_bad_config_is_one_line_exit_2(tmp_path, yaml_text, fragment):
    photo(tmp_path / "s.jpg")
    photo(tmp_path / "photos" / "a.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "c.yml").write_text(yaml_text)
    result = run("train.py", "-c", "c.yml", "--set", "max_steps=1", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "models").exists()


def test_bad_init_from_is_one_clear_error(tmp_path, monkeypatch):
    import keras
    from keras_style import data, training
    from keras_style.config import ConfigError, load_config
    from keras_style.errors import UserError
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "s.jpg")
    photo(tmp_path / "photos" / "a.jpg")
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "other.keras")
    (tmp_path / "c.yml").write_text("naming: x\nstyle_image: s.jpg\ntrain_data: photos\n")
    with pytest.raises(ConfigError, match="init_from nothing.keras: no such file"):
        load_config(tmp_path / "c.yml", ["init_from=nothing.keras"])
    with pytest.raises(ConfigError, match="extra_residual_blocks deepens the network of init_from"):
        load_config(tmp_path / "c.yml", ["extra_residual_blocks=2"])
    with pytest.raises(ConfigError, match="extra_residual_channels widens the network of init_from"):
        load_config(tmp_path / "c.yml", ["extra_residual_channels=8"])
    with pytest.raises(ConfigError, match="extra_base_channels must not be negative"):
        load_config(tmp_path / "c.yml", ["init_from=s.jpg", "extra_base_channels=-1"])
    with pytest.raises(ConfigError, match="relu_before_output: false shapes a MetaNet's transform"):
        load_config(tmp_path / "c.yml", ["relu_before_output=false"])
    with pytest.raises(ConfigError, match="demodulate: true shapes a MetaNet's transform"):
        load_config(tmp_path / "c.yml", ["demodulate=true"])
    with pytest.raises(ConfigError, match="color_match: 0.5 shapes a MetaNet's transform"):
        load_config(tmp_path / "c.yml", ["color_match=0.5"])
    with pytest.raises(ConfigError, match="keep_palette: true shapes a MetaNet's transform"):
        load_config(tmp_path / "c.yml", ["keep_palette=true"])
    with pytest.raises(UserError, match="s.jpg: not a .keras model file"):
        training.warm_start(load_config(tmp_path / "c.yml", ["init_from=s.jpg"]))
    result = run("train.py", "-c", "c.yml", "--set", "init_from=other.keras", cwd=tmp_path)
    assert_one_line_error(result, "init_from other.keras: not a per-style network or a MetaNet")
    assert not (tmp_path / "models").exists()


def test_train_missing_config_and_bad_override(tmp_path):
    assert_one_line_error(run("train.py", "-c", "none.yml", cwd=tmp_path), "none.yml")
    (tmp_path / "c.yml").write_text("naming: x\n")
    assert_one_line_error(run("train.py", "-c", "c.yml", "--set", "oops", cwd=tmp_path), "key=value")


def test_eval_several_models_and_gallery(trained):
    work, _ = trained
    (work / "models" / "copy").mkdir(exist_ok=True)
    (work / "models" / "copy" / "other.keras").write_bytes((work / "models/tiny/tiny.keras").read_bytes())
    photo(work / "g" / "a.jpg", (40, 30))
    photo(work / "g" / "b.jpg", (30, 40), seed=4)
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "models/copy/other.keras",
                 "--image_file", "g", "--output", "gout", "--gallery", "sheet.png", cwd=work)
    assert result.returncode == 0, result.stderr
    assert len(list((work / "gout").glob("res_*.jpg"))) == 4
    sheet = Image.open(work / "sheet.png")
    assert sheet.width > 3 * 30 and sheet.height > 2 * 30  # two rows of photo + two results


def test_gallery_wraps_a_long_row_onto_lines_of_at_most_columns_pictures():
    from keras_style import stylize
    row = [(f"s{i}", np.full((20, 10 * (i + 1), 3), 40.0 * i, np.float32)) for i in range(5)]
    one_line = stylize.gallery([row], height=20, gap=2)
    wrapped = stylize.gallery([row], height=20, gap=2, columns=2)
    line = 18 + 20 + 2  # label, picture, gap
    assert one_line.shape[:2] == (line - 2, 150 + 4 * 2)
    assert wrapped.shape[:2] == (3 * line - 2, 30 + 40 + 2)  # widest line: 30 + 40; last: 50
    assert np.allclose(wrapped[2 * line + 18 + 5, 5], 160.0)  # the fifth picture opens line three


def test_eval_gallery_columns_needs_a_gallery(trained):
    work, _ = trained
    photo(work / "gc.jpg")
    for extra in ([], ["--gallery", "sheet.png"]):
        result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "gc.jpg",
                     "--output", "gcout", "--gallery_columns", "0", *extra, cwd=work)
        assert_one_line_error(result, "--gallery_columns")
    assert not (work / "gcout").exists()


def test_eval_gallery_bad_format_writes_nothing(trained):
    work, _ = trained
    photo(work / "h.jpg")
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "h.jpg",
                 "--output", "hout", "--gallery", "sheet.txt", cwd=work)
    assert_one_line_error(result, "sheet.txt")
    assert not (work / "hout").exists()


def base_config(tmp_path, extra):
    photo(tmp_path / "s.jpg")
    photo(tmp_path / "photos" / "a.jpg")
    (tmp_path / "c.yml").write_text("naming: x\nstyle_image: s.jpg\ntrain_data: photos\n" + extra)
    return tmp_path / "c.yml"


@pytest.mark.parametrize("extra, fragment", [
    ("final_learning_rate: 1.0e-4\n", "go together"),
    ("final_steps: 5\n", "go together"),
    ("final_learning_rate: -1.0\nfinal_steps: 5\n", "final_learning_rate must be positive"),
    ("final_learning_rate: 1.0e-4\nfinal_steps: 20\nmax_steps: 20\n", "fewer than max_steps (20)"),
    ("warmup_steps: -1\n", "warmup_steps must not be negative"),
])
def test_learning_rate_schedule_config_errors(tmp_path, monkeypatch, extra, fragment):
    from keras_style.config import ConfigError, load_config
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(base_config(tmp_path, extra))


# During step s the optimiser has applied s - 1 updates; the rates of steps 1..10 at learning_rate 1e-2.
@pytest.mark.parametrize("extra, rates", [
    ("", [1e-2] * 10),
    ("final_learning_rate: 1.0e-4\nfinal_steps: 3\n", [1e-2] * 7 + [1e-4] * 3),
    ("warmup_steps: 4\nfinal_learning_rate: 1.0e-4\nfinal_steps: 3\n",
     [2.5e-3, 5e-3, 7.5e-3] + [1e-2] * 4 + [1e-4] * 3),
])
def test_learning_rate_schedule_step_by_step(tmp_path, monkeypatch, extra, rates):
    from keras_style import training
    from keras_style.config import load_config
    monkeypatch.chdir(tmp_path)
    schedule = training.learning_rate(load_config(base_config(tmp_path, "learning_rate: 1.0e-2\nmax_steps: 10\n"
                                                                         + extra)), task=None)
    np.testing.assert_allclose([float(schedule(step - 1)) for step in range(1, 11)], rates, rtol=1e-6)
    restored = training.RateSchedule.from_config(schedule.get_config())
    assert [float(restored(i)) for i in range(10)] == [float(schedule(i)) for i in range(10)]


def test_numbers_without_a_dot_are_numbers(tmp_path, monkeypatch):
    # YAML 1.1 reads 2e6 as the string "2e6"; users writing it mean the number.
    from keras_style.config import ConfigError, load_config
    monkeypatch.chdir(tmp_path)
    config = load_config(base_config(tmp_path, "learning_rate: 1e-3\n"), ["style_weight=2e6"])
    assert (config.learning_rate, config.style_weight) == (1e-3, 2e6)
    for bad in ("style_weight=2e", "style_weight=e6", "style_weight=two"):
        with pytest.raises(ConfigError, match="style_weight must be a number"):
            load_config(base_config(tmp_path, ""), [bad])


def test_residual_width_defaults_to_four_times_base_and_sets_the_quarter_resolution(tmp_path, monkeypatch):
    from keras_style.config import ConfigError, load_config
    from keras_style.transform import build_transform_net
    monkeypatch.chdir(tmp_path)
    assert load_config(base_config(tmp_path, "base: 6\n")).residual_width == 24
    config = load_config(base_config(tmp_path, "base: 6\nresidual_width: 10\n"))
    net = build_transform_net(config.base, 2, config.residual_width)
    widths = {layer.name: layer.filters for layer in net.layers if hasattr(layer, "filters")}
    assert (widths["stem_conv"], widths["down1_conv"], widths["down2_conv"], widths["res2_b_conv"],
            widths["up1_conv"]) == (6, 12, 10, 10, 12)
    with pytest.raises(ConfigError, match="residual_width must be at least 1"):
        load_config(base_config(tmp_path, "residual_width: 0\n"))


def test_loss_form_is_checked(tmp_path, monkeypatch):
    from keras_style.config import ConfigError, load_config
    monkeypatch.chdir(tmp_path)
    assert load_config(base_config(tmp_path, "")).loss_form == "squared"
    assert load_config(base_config(tmp_path, "loss_form: distances\n")).loss_form == "distances"
    with pytest.raises(ConfigError, match="loss_form must be one of squared, distances, got 'l1'"):
        load_config(base_config(tmp_path, "loss_form: l1\n"))
