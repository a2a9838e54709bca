"""tf.distribute for real on one machine: MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy over two worker processes on 127.0.0.1. Each must take the same steps
as one replica with the same global batch."""
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from test_cli import ROOT, photo, run

pytestmark = pytest.mark.slow

CONFIG = ("style_image: style.png\nnaming: single\ntrain_data: photos\nimage_size: 32\nbatch_size: 4\n"
          "max_steps: 3\nlog_every: 3\nsave_every: 3\nbase: 4\nresidual_blocks: 1\n"
          "style_weight: 1.0e+5\nlearning_rate: 1.0e-2\nmixed_precision: false\n")

# Two logical CPU devices must be configured before TensorFlow starts: a tiny launcher does that.
TWO_CPUS = """import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_style.cli import train_main
sys.exit(train_main(sys.argv[1:]))
"""


def env(**extra):
    return {**os.environ, "KERAS_STYLE_VGG19": "random", "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def stylised(path):
    """What a trained model makes of a fixed photo: the comparison that matters (a convolution's
    bias before instance normalisation gets no gradient, so Adam moves it by noise alone)."""
    from keras_style.stylize import load_model
    photo_pixels = np.random.default_rng(5).uniform(0, 255, (1, 40, 48, 3)).astype(np.float32)
    return np.asarray(load_model(path)(photo_pixels))


def assert_same_training(a, b):
    # Gradients summed in another order differ in the last bits, and Adam moves a parameter whose
    # gradient is only that noise by the full learning rate. Measured on an Intel Xeon (oneDNN):
    # 0.03% of the images' range on average, 0.2% at most; training on half the batch, or with
    # another seed, differs by 9-12% on average.
    want = stylised(a)
    difference = np.abs(stylised(b) - want)
    assert difference.mean() < 0.001 * np.ptp(want) and difference.max() < 0.01 * np.ptp(want)


def digests(stdout):
    return re.findall(r"weights digest ([0-9a-f]+)", stdout)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Photos, a style and the config; plus the single-replica reference run."""
    folder = tmp_path_factory.mktemp("distribute")
    for i in range(6):
        photo(folder / "photos" / f"p{i}.jpg", (48, 40), seed=i)
    photo(folder / "style.png", (32, 32), seed=9)
    (folder / "c.yml").write_text(CONFIG)
    (folder / "two_cpus.py").write_text(TWO_CPUS)
    result = run("train.py", "-c", "c.yml", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_mirrored_over_two_cpu_devices_matches_one_replica(work):
    result = subprocess.run([sys.executable, "two_cpus.py", "-c", "c.yml", "--set", "distribute=mirrored",
                             "naming=mirrored"], cwd=work, env=env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert "steps 1..3, batch 4 split over 2 replicas" in result.stdout
    assert "on its 2 replica(s)" in result.stdout and "different weights" not in result.stderr
    assert_same_training(work / "models" / "single" / "single.keras",
                         work / "models" / "mirrored" / "mirrored.keras")


def test_mirrored_batch_must_split_evenly(work):
    result = subprocess.run([sys.executable, "two_cpus.py", "-c", "c.yml", "--set", "distribute=mirrored",
                             "batch_size=3", "naming=odd"], cwd=work, env=env(), capture_output=True,
                            text=True, timeout=600)
    # (the launcher's own TensorFlow import logs to stderr first; train.py adds one line)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.py: error: batch_size 3 must be a multiple of the 2 replicas" in result.stderr.splitlines()[-1]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_over_two_processes_matches_one_replica(work, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    scratch = [tmp_path / f"tmp{i}" for i in range(2)]
    processes = []
    for index, tmp in enumerate(scratch):
        tmp.mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "-c", "c.yml", "--set", "distribute=multi_worker",
             "naming=multi"], cwd=work, env=env(TF_CONFIG=tf_config, TMPDIR=str(tmp)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=600))
    finally:
        for process in processes:
            process.kill()
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    chief_out, worker_out = outputs[0][0], outputs[1][0]
    assert "split over 2 replicas" in chief_out and "exported" in chief_out
    assert "exported" not in worker_out
    assert len(digests(chief_out)) == 1 and digests(chief_out) == digests(worker_out)
    assert not list(scratch[1].iterdir())  # the worker removed its temporary folder
    run_dir = work / "models" / "multi"
    assert (run_dir / "multi.keras").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    assert_same_training(work / "models" / "single" / "single.keras", run_dir / "multi.keras")
