"""SavedModel and TFLite exports: loaded back and run, matching the .keras model."""
import numpy as np
import pytest

from keras_style import export, precision, stylize
from test_cli import assert_one_line_error, photo, run, trained  # noqa: F401  (the fixture)
from test_metanet_cli import trained as trained_metanet  # noqa: F401

pytestmark = pytest.mark.slow


def exported(result):
    """{file name: (mean difference, largest difference)} from export.py's lines."""
    import re
    found = {}
    for line in result.stdout.splitlines():
        match = re.search(r"/([^/ ]+)  \(.*matches the model within ([0-9.]+) of 255, ([0-9.]+) on average", line)
        if match:
            found[match.group(1)] = (float(match.group(3)), float(match.group(2)))
    return found


def test_a_per_style_network_exports_and_runs(trained):  # noqa: F811
    work, _ = trained
    result = run("export.py", "--model_file", "models/tiny/tiny.keras", "--output", "exp", cwd=work)
    assert result.returncode == 0, result.stderr
    assert set(exported(result)) == {"tiny_saved_model", "tiny.tflite"}
    assert all(largest <= export.TOLERANCE for _, largest in exported(result).values())
    image = np.random.default_rng(0).uniform(0, 255, (30, 26, 3)).astype(np.float32)
    model = stylize.in_precision(stylize.load_model(work / "models/tiny/tiny.keras"),
                                 precision.Precision("float32", "test"))
    want = np.asarray(model(image[None]))[0]
    for got in (export.run_saved_model(work / "exp" / "tiny_saved_model", image),
                export.run_tflite(work / "exp" / "tiny.tflite", image)):  # another size than the check's
        assert np.abs(np.clip(got, 0, 255) - np.clip(want, 0, 255)).max() <= export.TOLERANCE


def test_a_metanet_exports_whole_and_for_one_style(trained_metanet):  # noqa: F811
    work, _, _ = trained_metanet
    whole = run("export.py", "--model_file", "models/mn/mn.keras", "--output", "exp", cwd=work)
    assert whole.returncode == 0, whole.stderr
    assert set(exported(whole)) == {"mn_saved_model", "mn.tflite"}
    one = run("export.py", "--model_file", "models/mn/mn.keras", "--style_image", "s1.jpg",
              "--formats", "tflite", "--float16", "--output", "exp", cwd=work)
    assert one.returncode == 0, one.stderr
    assert set(exported(one)) == {"mn+s1.tflite"}
    assert (work / "exp" / "mn+s1.tflite").stat().st_size < (work / "exp" / "mn.tflite").stat().st_size


def test_export_errors_are_one_line(trained, tmp_path):  # noqa: F811
    work, _ = trained
    result = run("export.py", "--model_file", "models/tiny/tiny.keras", "--style_image", "style.png", cwd=work)
    assert_one_line_error(result, "a per-style network ignores styles")
    (tmp_path / "m.keras").write_text("nope")
    result = run("export.py", "--model_file", str(tmp_path / "m.keras"), cwd=work)
    assert_one_line_error(result, "not a keras-style model file")
