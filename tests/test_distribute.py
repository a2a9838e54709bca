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
          "max_steps: 3\nlog_every: 1\nsave_every: 3\nbase: 4\nresidual_blocks: 1\n"
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


def logged_losses(run_dir):
    """{step: loss/total} from a run's TensorBoard events."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2
    losses = {}
    for path in run_dir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "loss/total":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def assert_same_training(single_dir, distributed_dir):
    """What splitting a batch guarantees: the first step, taken from the same weights, sees the same
    global batch, so its loss (averaged over replicas with the gradients, in one all-reduce) is the
    single replica's up to float32 rounding. (Measured: 1e-7 relative on an AMD EPYC with AVX-512;
    giving both replicas the same half of the batch changes it by 2.2%.) Once Adam steps, a parameter
    whose gradient is only rounding noise (a convolution's bias before instance normalisation) moves
    by the full rate in a direction that noise decides, so the weights of later steps are not
    comparable across CPUs' kernels (images 0.03% apart on an Intel Xeon, 4% on an AVX2 AMD EPYC);
    that the replicas agree with each other is what the weights digests check."""
    single, distributed = logged_losses(single_dir), logged_losses(distributed_dir)
    assert sorted(single) == sorted(distributed) == [1, 2, 3]
    assert distributed[1] == pytest.approx(single[1], rel=1e-4)
    assert all(np.isfinite(v) for v in distributed.values())


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
    assert_same_training(work / "models" / "single", work / "models" / "mirrored")


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
    assert_same_training(work / "models" / "single", run_dir)
