"""Command lines: `train.py` and `eval.py`.

Problems a user can fix print one line on stderr and exit with status 2; Ctrl-C exits with 130
after the work in progress has been saved.
"""
import argparse
import os
import sys
from pathlib import Path

from keras_style.errors import UserError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter quiet

DEFAULT_OUTPUT_DIR = Path("generated")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_PHOTO, SAMPLE_STYLE = SAMPLES / "chelsea.jpg", SAMPLES / "rocket.jpg"  # what exports are checked on
MIN_VGG_SIDE = 16  # VGG19 pools four times before relu5_1


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 muted: its C++ start-up lines (CUDA probing,
    oneDNN notices) ignore TF_CPP_MIN_LOG_LEVEL and would bury our one-line messages."""
    if "tensorflow" in sys.modules or os.environ.get("KERAS_STYLE_VERBOSE"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    # TensorFlow's Python warnings (e.g. about a checkpoint that failed to load, after we have
    # reported it ourselves) would follow our one-line messages.
    tensorflow.get_logger().setLevel("ERROR")


def _run(prog, work):
    try:
        _import_tensorflow_quietly()
        return work() or 0
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------------- eval

def build_eval_parser():
    p = _Parser(
        prog="eval.py",
        description="Stylise photos. With --model_file, apply a trained network (fast; a MetaNet "
                    "model takes any --style_image); with only --style_image, optimise each photo "
                    "against the style (Gatys et al., slow).",
        epilog="examples:\n"
               "  python eval.py --model_file pretrained/wave.keras --image_file samples/astronaut.jpg\n"
               "  python eval.py --model_file pretrained/metanet.keras --style_image painting.jpg "
               "--image_file photos/ --save_style painting.npy\n"
               "  python eval.py --image_file photo.jpg --style_image painting.jpg --iterations 200",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_file", nargs="+", required=True, metavar="PATH",
                   help="photos to stylise: files and/or folders")
    p.add_argument("--model_file", nargs="+", metavar="M.keras",
                   help="network(s) exported by train.py, e.g. pretrained/wave.keras; several give "
                        "one result per network")
    p.add_argument("--gallery", metavar="FILE",
                   help="with --model_file: also write one image with each photo and its results "
                        "side by side, labelled with the model names")
    p.add_argument("--gallery_columns", type=int, metavar="N",
                   help="with --gallery: at most N pictures a line; a photo's row continues on the "
                        "next line (default: one line per photo)")
    p.add_argument("--style_image", nargs="+", metavar="IMG",
                   help="style image(s); several are blended (see --style_weights). With a MetaNet "
                        "--model_file, the style(s) to apply")
    p.add_argument("--style_weights", nargs="+", type=float, metavar="W",
                   help="one weight per --style_image (default: equal)")
    p.add_argument("--each_style", action="store_true",
                   help="with a MetaNet: a result for each --style_image on its own instead of one for "
                        "their blend (e.g. for a --gallery)")
    p.add_argument("--save_style", metavar="S.npy",
                   help="with a MetaNet --model_file: also save the encoded (blended) style vector")
    p.add_argument("--style_file", metavar="S.npy",
                   help="with a MetaNet --model_file: a style vector saved with --save_style, "
                        "instead of --style_image")
    p.add_argument("--output", metavar="PATH",
                   help="output file (one photo) or folder (default: generated/res_[<model>]_[<image>].jpg; "
                        "res_[<model>+<style>]_[<image>].jpg for a MetaNet)")
    p.add_argument("--max_size", type=int, metavar="PX",
                   help="with --model_file: shrink photos so the longer side is at most PX")
    p.add_argument("--tile_size", type=int, metavar="PX",
                   help="with --model_file: stylise in tiles of PX x PX pixels (with the whole photo's "
                        "normalisation statistics, so no seams). Default: photos over 4 megapixels in "
                        "tiles of 1024, whatever their size; smaller ones whole")
    p.add_argument("--smoothing", type=float, default=0.3, metavar="S",
                   help="with a video: the share of the previous result, moved with the camera, kept where "
                        "the picture did not change, against flicker (default 0.3; 0 for none)")
    p.add_argument("--precision", choices=("auto", "bfloat16", "float32"), default="auto",
                   help="arithmetic of the networks (default auto: bfloat16 where the hardware has it "
                        "natively, e.g. AVX-512 BF16, AMX or a GPU of compute capability 8.0+; "
                        "float32 elsewhere, where bfloat16 is emulated and slower)")
    g = p.add_argument_group("optimisation (no --model_file)")
    g.add_argument("--iterations", type=int, default=100,
                   help="L-BFGS (or Adam) iterations in all, over every scale (default 100)")
    g.add_argument("--scales", nargs="+", default=["auto"], metavar="PX",
                   help="coarse-to-fine: optimise first at these smaller sizes (longer side), each result "
                        "enlarged to start the next, then at --image_size with 30%% of the iterations. "
                        "auto (default): halvings of --image_size down to 256 (512 -> 256; "
                        "2048 -> 256 512 1024); none: only at --image_size")
    g.add_argument("--image_size", type=int, default=512, metavar="PX",
                   help="longer side of the result (default 512)")
    g.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    g.add_argument("--learning_rate", type=float, default=5.0, help="Adam's step size (default 5)")
    g.add_argument("--content_weight", type=float, default=1.0)
    g.add_argument("--style_weight", type=float, default=3e5,
                   help="weight of the style loss (relative Gram distances, summed over style layers; default 3e5)")
    g.add_argument("--tv_weight", type=float, default=1e-2)
    g.add_argument("--init", choices=("content", "noise"), default="content")
    g.add_argument("--content_layers", nargs="+", default=["relu4_2"], metavar="LAYER")
    g.add_argument("--style_layers", nargs="+", metavar="LAYER",
                   default=["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    g.add_argument("--preserve_color", action="store_true",
                   help="keep the photo's colours (transfer luminance only)")
    g.add_argument("--save_every", type=int, default=0, metavar="N",
                   help="also write the image every N iterations")
    g.add_argument("--vgg_weights", metavar="H5",
                   help="VGG19 no-top weights file (default: $KERAS_STYLE_VGG19, "
                        "pretrained/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, then Keras' download)")
    return p


def eval_main(argv=None):
    args = build_eval_parser().parse_args(argv)
    return _run("eval.py", lambda: _eval(args))


def _eval(args):
    from keras_style import images
    photos = _collect_photos(args.image_file)
    if args.max_size is not None and args.max_size < 1:
        raise UserError("--max_size must be a positive number of pixels")
    if not 0 <= args.smoothing < 1:
        raise UserError("--smoothing must be from 0 to below 1")
    if args.tile_size is not None and not 64 <= args.tile_size <= 8192:
        raise UserError("--tile_size must be from 64 to 8192 pixels")
    if (args.save_style or args.style_file) and not args.model_file:
        raise UserError("--save_style and --style_file need a MetaNet --model_file")
    if args.style_file and args.style_image:
        raise UserError("give --style_image or --style_file, not both")
    if args.each_style and (not args.style_image or args.style_weights or not args.model_file):
        raise UserError("--each_style needs a MetaNet --model_file and several --style_image, "
                        "without --style_weights")
    if args.style_weights and not args.style_image:
        raise UserError("--style_weights needs --style_image (one weight per style image)")
    if args.gallery_columns is not None and (not args.gallery or args.gallery_columns < 1):
        raise UserError("--gallery_columns needs --gallery and at least 1 picture a line")
    if args.model_file:
        return _eval_model(args, photos)
    if args.style_image:
        return _eval_optimise(args, photos)
    raise UserError("give --model_file (a trained network) or --style_image (optimise the photo)")


def _collect_photos(paths):
    from keras_style import images
    photos = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = images.find_images(path)  # (videos only when named: a folder's GIFs are images)
            if not found:
                raise UserError(f"{path}: folder holds no images")
            photos.extend(found)
        elif path.exists():
            photos.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return photos


def output_paths(photos, tag, output, protected):
    """Where each result goes (a video's is an .mp4); refuses to write over an input or to give two
    photos one name."""
    from keras_style.images import SAVE_FORMATS, save_format
    from keras_style.video import is_video
    suffix = Path(output).suffix.lower() if output else ""
    if suffix == ".mp4":
        if len(photos) != 1 or not is_video(photos[0]):
            raise UserError(f"--output {output}: an .mp4 result needs one video as --image_file")
    elif output and suffix and not Path(output).is_dir():
        save_format(output, f"--output {output}", alternative="or a folder")
        if len(photos) == 1 and is_video(photos[0]):
            raise UserError(f"--output {output}: a video's result is an .mp4 (or give a folder)")
    single_file = output and len(photos) == 1 and (suffix in SAVE_FORMATS or suffix == ".mp4")
    if output and not single_file and suffix in SAVE_FORMATS:
        raise UserError(f"--output {output}: {len(photos)} photos need a folder, not a file name")
    folder = Path(output) if output and not single_file else DEFAULT_OUTPUT_DIR
    targets = [Path(output)] if single_file else [
        folder / f"res_[{tag}]_[{p.stem}]{'.mp4' if is_video(p) else '.jpg'}" for p in photos]
    if len(set(targets)) != len(targets):
        raise UserError("two photos have the same file name; stylise them separately or use --output")
    for target in targets:
        check_writable_output(target, protected, f"{target}: output")
    return targets


def check_writable_output(path, protected, label):
    """Refuse an output path that is a folder or one of the `protected` (input) files."""
    if Path(path).is_dir():
        raise UserError(f"{label} is a folder")
    if Path(path).resolve() in {Path(p).resolve() for p in protected}:
        raise UserError(f"{label} would overwrite an input file")


def _for_each_photo(photos, targets, work):
    """Run `work(photo, target)` on each photo; unreadable photos are reported and skipped."""
    failures = []
    for photo, target in zip(photos, targets):
        try:
            work(photo, target)
        except UserError as exc:
            if len(photos) == 1:
                raise
            print(f"eval.py: skipped: {exc}", file=sys.stderr)
            failures.append(photo)
    if failures:
        raise UserError(f"{len(failures)} of {len(photos)} photos could not be stylised")


def _eval_model(args, photos):
    from keras_style import images, precision, stylize, video
    model_files = [Path(m) for m in args.model_file]
    if args.output and len(model_files) > 1 and Path(args.output).suffix:
        raise UserError(f"--output {args.output}: {len(model_files)} models need a folder")
    protected = photos + model_files + [Path(s) for s in args.style_image or []]
    protected += [Path(args.style_file)] if args.style_file else []
    if args.save_style:
        _check_save_style_path(Path(args.save_style), protected)
    models = [stylize.load_model(m) for m in model_files]  # a bad file fails before anything is said
    chosen = precision.chosen("stylising", args.precision)
    stylizers = [stylizer for m, model in zip(model_files, models)
                 for stylizer in _stylizers(stylize.in_precision(model, chosen), m, args)]
    if args.save_style and (len(stylizers) != 1 or not isinstance(stylizers[0], stylize.MetaNetStylizer)):
        raise UserError("--save_style needs exactly one --model_file, a MetaNet")
    if args.gallery:
        gallery = Path(args.gallery)
        images.save_format(gallery, f"--gallery {gallery}")
        check_writable_output(gallery, protected, f"--gallery {gallery}:")
        protected.append(gallery)
    if args.save_style:
        protected.append(Path(args.save_style))
    plans = [(stylizer, output_paths(photos, stylizer.name, args.output, protected))
             for stylizer in stylizers]
    if args.save_style:
        _save_style(stylizers[0].params.numpy()[0], Path(args.save_style))
    results = {photo: [] for photo in photos}

    def work(photo, targets):
        if video.is_video(photo):
            return _stylize_video(photo, plans, targets, args)
        image = _load_photo(photo, args.max_size)
        if args.gallery:
            results[photo].append(("photo", image))
        for (stylizer, _), target in zip(plans, targets):
            result, seconds = stylize.timed(stylizer, image, args.tile_size)
            images.save_image(result, target)
            if args.gallery:
                results[photo].append((stylizer.name, result))
            print(f"{target}  ({image.shape[1]}x{image.shape[0]}, {seconds:.3f} s)")

    _for_each_photo(photos, list(zip(*(targets for _, targets in plans))), work)
    if args.gallery:
        rows = [row for row in results.values() if row]
        images.save_image(stylize.gallery(rows, columns=args.gallery_columns), args.gallery)
        print(f"{args.gallery}  (gallery)")


def _stylize_video(path, plans, targets, args):
    from keras_style import video
    clip = video.Clip(path, args.max_size)
    for (stylizer, _), target in zip(plans, targets):
        print(f"{path}: {clip.size[0]}x{clip.size[1]} at {clip.fps:g} frames/s"
              + (", with audio" if clip.has_audio else ""))
        frames, seconds = video.stylize_clip(lambda frame: stylizer(frame, args.tile_size), clip, target,
                                             args.smoothing)
        print(f"{target}  ({frames} frames, {frames / seconds:.1f} frames/s)")


def _load_photo(photo, max_size):
    """A photo to stylise; one too big to stylise whole stays 8-bit (a quarter of float32's memory)."""
    import numpy as np
    from keras_style import images, stylize
    width, height = images.header_size(photo)
    big = width * height > stylize.WHOLE_PIXELS and (max_size is None or max_size >= max(width, height))
    return images.load_image(photo, max_size=max_size, dtype=np.uint8 if big else np.float32)


def _stylizers(model, path, args):
    """One stylizer for the model, or with --each_style one per --style_image."""
    import copy
    if not args.each_style:
        return [_stylizer(model, path, args)]
    stylizers = []
    for style in args.style_image:
        one = copy.copy(args)
        one.style_image = [style]
        stylizers.append(_stylizer(model, path, one))
    return stylizers


def _stylizer(model, path, args):
    """A TransformStylizer for a per-style model; a MetaNetStylizer with its style set for a MetaNet."""
    from keras_style import images, stylize
    if not (args.style_image or args.style_file):
        return stylize.TransformStylizer(model, path)  # refuses a MetaNet: it needs a style
    stylizer = stylize.MetaNetStylizer(model, path)  # refuses a per-style model: it ignores styles
    if args.style_file:
        stylizer.use_style([stylizer.load_style(args.style_file)], Path(args.style_file).stem)
        return stylizer
    vectors = []
    for style in args.style_image:
        image = images.load_style_image(style, 4 * stylize.STYLE_SIDE, verbose=False)
        vector, seconds = stylize.timed(stylizer.encode, image)
        print(f"encoded style {style} (read at {stylize.STYLE_SIDE} px on its shorter side, as in "
              f"training; {seconds:.3f} s)")
        vectors.append(vector)
    stylizer.use_style(vectors, "+".join(Path(s).stem for s in args.style_image), args.style_weights)
    return stylizer


def _check_save_style_path(path, protected):
    if path.suffix.lower() != ".npy":
        raise UserError(f"--save_style {path}: the file name must end in .npy")
    check_writable_output(path, protected, f"--save_style {path}:")


def _save_style(vector, path):
    import numpy as np
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vector.astype(np.float32))
    except OSError as exc:
        raise UserError(f"--save_style {path}: cannot write ({exc.strerror or exc})") from None
    print(f"{path}  (style vector of {vector.size} numbers)")


def _eval_optimise(args, photos):
    from keras_style import images, optimize, video
    if any(video.is_video(p) for p in photos):
        raise UserError("stylising a video needs a trained network (--model_file); optimisation is per image")
    options = optimize.GatysOptions(
        iterations=args.iterations, optimizer=args.optimizer, learning_rate=args.learning_rate,
        content_weight=args.content_weight, style_weight=args.style_weight,
        tv_weight=args.tv_weight, init=args.init, content_layers=tuple(args.content_layers),
        style_layers=tuple(args.style_layers), precision=args.precision)
    if args.image_size < 16:
        raise UserError("--image_size must be at least 16 pixels")
    if args.save_every < 0:
        raise UserError("--save_every must not be negative")
    scales = _scales(args.scales, args.image_size)
    options.validate()
    # Style statistics do not depend on size, so tiny style images are simply enlarged.
    styles = [images.load_style_image(s, args.image_size, MIN_VGG_SIDE) for s in args.style_image]
    tag = "+".join(Path(s).stem for s in args.style_image)
    targets = output_paths(photos, tag, args.output, photos + [Path(s) for s in args.style_image])
    transfer = optimize.GatysTransfer(options, vgg_weights=args.vgg_weights)

    def work(photo, target):
        content = images.resize_to_longer(images.load_image(photo, max_size=args.image_size), args.image_size)
        if min(content.shape[:2]) < MIN_VGG_SIDE:
            raise UserError(f"{photo}: {content.shape[1]}x{content.shape[0]} at --image_size "
                            f"{args.image_size} is too thin; the loss network needs {MIN_VGG_SIDE} px "
                            "on each side (raise --image_size)")
        save = lambda i, img: images.save_image(img, target.with_name(f"{target.stem}_{i:04d}{target.suffix}"))  # noqa: E731
        reporter = optimize.ProgressReporter(args.iterations, args.save_every, save)
        plan = optimize.coarse_to_fine_plan(max(content.shape[:2]), args.iterations, scales,
                                            shorter_ratio=min(content.shape[:2]) / max(content.shape[:2]))
        result = optimize.stylize_with_optimisation(
            transfer, content, styles, args.style_weights, args.preserve_color, reporter, plan,
            lambda index, shape, iterations: reporter.start_scale(index, shape, iterations, len(plan)))
        reporter.close()
        images.save_image(result, target)
        print(f"{target}  ({content.shape[1]}x{content.shape[0]}, {reporter.iterations_done} iterations, "
              f"{reporter.seconds_per_iteration():.2f} s/iteration)")

    _for_each_photo(photos, targets, work)


def _scales(values, image_size):
    """--scales: "auto", "none", or sizes in pixels between 16 and --image_size."""
    if len(values) == 1 and values[0] in ("auto", "none"):
        return values[0]
    sizes = []
    for value in values:
        if not value.isdigit() or not MIN_VGG_SIDE <= int(value) < image_size:
            raise UserError(f"--scales {value}: give auto, none, or sizes in pixels from {MIN_VGG_SIDE} "
                            f"to below --image_size ({image_size})")
        sizes.append(int(value))
    return sizes


# -------------------------------------------------------------------------------------------- export

def build_export_parser():
    p = _Parser(
        prog="export.py",
        description="Export a model file to a TensorFlow SavedModel (TF Serving, the TF.js converter) "
                    "and to TFLite (phones). Each export is loaded back and run on a sample photo, and "
                    "kept only if it matches the model (in float32) within 1 level of 255.",
        epilog="examples:\n"
               "  python export.py --model_file pretrained/wave.keras\n"
               "  python export.py --model_file pretrained/metanet.keras --style_image painting.jpg\n"
               "  python export.py --model_file pretrained/metanet.keras --output exported/metanet",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", required=True, metavar="M.keras", help="a model file from train.py")
    p.add_argument("--output", metavar="FOLDER", help="where to write (default: exported/<model>)")
    p.add_argument("--style_image", nargs="+", metavar="IMG",
                   help="with a MetaNet: export the transform for this (blend of) style(s) only")
    p.add_argument("--style_weights", nargs="+", type=float, metavar="W")
    p.add_argument("--style_file", metavar="S.npy", help="with a MetaNet: a style saved with --save_style")
    p.add_argument("--formats", nargs="+", choices=("saved_model", "tflite"), default=["saved_model", "tflite"])
    p.add_argument("--float16", action="store_true",
                   help="store the TFLite weights in float16 (half the file; checked within 4 levels)")
    return p


def export_main(argv=None):
    args = build_export_parser().parse_args(argv)
    return _run("export.py", lambda: _export(args))


def _export(args):
    import numpy as np
    from keras_style import export, images, stylize
    model_path = Path(args.model_file)
    if args.style_file and args.style_image:
        raise UserError("give --style_image or --style_file, not both")
    model, is_metanet = export.load(model_path)
    name, params = model_path.stem, None
    if args.style_image or args.style_file:
        stylizer = _stylizer(model, model_path, args)  # refuses a per-style model
        name, params = stylizer.name, stylizer.params.numpy()
    module = export.exportable(model, params)
    photo = images.resize_to_max(images.load_image(SAMPLE_PHOTO), 256)
    inputs = [photo]
    if is_metanet and params is None:
        inputs.append(images.resize_shorter_to(images.load_image(SAMPLE_STYLE), stylize.STYLE_SIDE))
    folder = Path(args.output) if args.output else Path("exported") / model_path.stem
    for path, mean, largest in export.export(module, folder, name, inputs, args.formats, args.float16):
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        speed = ""
        if path.suffix == ".tflite":
            timed = [np.full((512, 512, 3), 128, np.float32)] + inputs[1:]
            speed = f", {export.timed_tflite(path, *timed):.3f} s for 512x512 with {export.TFLITE_THREADS} threads"
        print(f"{path}  ({size / 1e6:.1f} MB; matches the model within {largest:.2f} of 255, "
              f"{mean:.3f} on average{speed})")


# --------------------------------------------------------------------------------------------- train

def build_train_parser():
    p = _Parser(
        prog="train.py",
        description="Train a network from a YAML config: a per-style transform network "
                    "(method: transform) or a MetaNet for any style (method: metanet). "
                    "Re-running the same command resumes from the latest checkpoint.",
        epilog="examples:\n"
               "  python train.py -c conf/wave.yml\n"
               "  python train.py -c conf/new.yml --set style_image=my.jpg naming=mine   "
               "# a new style in minutes, from candy's trained network\n"
               "  python train.py -c conf/wave.yml --set style_image=my.jpg naming=mine max_steps=2000\n"
               "  tensorboard --logdir models/wave",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, metavar="YML", help="config file (see conf/)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                   metavar="KEY=VALUE", help="override config keys (repeatable)")
    return p


def train_main(argv=None):
    args = build_train_parser().parse_args(argv)
    return _run("train.py", lambda: _train(args))


def _train(args):
    from keras_style.config import load_config
    config = load_config(args.config, args.overrides)
    from keras_style import training
    training.train(config)
