"""Multi-process training and evaluation on JAX's distributed runtime.

Two processes of one CPU device each join a coordinator on 127.0.0.1 (gloo
collectives, `--multihost` settings from JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID), build the synthetic dataset (process 0
builds, process 1 waits), train the tiny demo model 4 steps through the real
input pipeline (each reads its half of every global batch of 8) into one
shared workdir, validate, resume the finished run, then evaluate the
checkpoint per patch and per image. A single process with two CPU devices
runs the same config beside them: the same global batches on a 2-device mesh,
so parameters and figures must agree to float rounding.
Slow: three Python processes importing TensorFlow and JAX, about 3 CPU
minutes in all; marked `multiprocess` (deselect with -m 'not multiprocess').
Every process runs in its own session and all are killed on a timeout or on
the first failure, so a stuck collective cannot hang the suite.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from deepmask_jax.models import store
from tests.conftest import REPO, max_difference

pytestmark = pytest.mark.multiprocess

# About 100 s on 2 idle cores; generous, as test machines are often shared.
TIMEOUT_S = 900
WORKER = 'tests.train.multiprocess_worker'


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def launch(args, devices: int, log_path, **env):
  """Starts a worker in its own process group, output to `log_path`."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             **env)
  with open(log_path, 'w') as log:  # The child keeps its own copy.
    return subprocess.Popen([sys.executable, '-m', WORKER, *map(str, args)],
                            cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_all(procs: dict, logs: dict) -> None:
  """Waits for every process; kills all of them on a timeout or a failure."""
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while any(p.poll() is None for p in procs.values()):
      failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
      if failed or time.monotonic() > deadline:
        break
      time.sleep(0.5)
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
  bad = {n: p.returncode for n, p in procs.items() if p.returncode != 0}
  if bad:
    tails = '\n'.join(f'--- {n} (exit {bad[n]}):\n'
                      + logs[n].read_text()[-3000:] for n in bad)
    pytest.fail(f'processes failed or timed out after {TIMEOUT_S} s: {bad}\n'
                + tails)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """{'single': ..., 'multi': [process 0, process 1]}: outputs and workdirs."""
  root = tmp_path_factory.mktemp('multiprocess')
  port = free_port()
  procs, logs, outs = {}, {}, {}
  started = time.monotonic()
  for name, devices, env in [
      ('single', 2, {}),
      *[(f'process{i}', 1, {'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
                            'JAX_NUM_PROCESSES': '2',
                            'JAX_PROCESS_ID': str(i)}) for i in range(2)]]:
    run = 'single' if name == 'single' else 'multi'
    # Each run generates and builds its dataset (in the 2-process run,
    # process 0 does while process 1 waits): the same files, as the seeds match.
    outs[name], logs[name] = root / f'{name}.json', root / f'{name}.log'
    procs[name] = launch([root / run, root / f'{run}_data', root / f'{run}_tfds',
                          outs[name]], devices, logs[name], **env)
  wait_all(procs, logs)
  print(f'three processes took {time.monotonic() - started:.1f} s')
  results = {name: dict(json.loads(path.read_text()), log=logs[name].read_text())
             for name, path in outs.items()}
  print('CPU seconds per process:',
        {name: round(r['cpu_seconds'], 1) for name, r in results.items()})
  return dict(results, root=root)


def test_each_process_saw_two_processes_and_two_devices(runs):
  assert [runs[f'process{i}']['process_index'] for i in range(2)] == [0, 1]
  for name in ('process0', 'process1'):
    assert runs[name]['process_count'] == 2
    assert runs[name]['devices'] == 2
  assert runs['single']['process_count'] == 1
  assert runs['single']['devices'] == 2


def test_two_processes_train_the_same_parameters_as_one(runs):
  multi, _ = store.load_training_checkpoint(str(runs['root'] / 'multi'))
  single, _ = store.load_training_checkpoint(str(runs['root'] / 'single'))
  scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(single))
  assert max_difference(multi, single) <= 1e-5 * scale
  # And training moved them (the comparison is not of two initialisations).
  fresh = sorted(os.listdir(runs['root'] / 'multi' / 'checkpoints'))
  assert fresh == ['2', '4']


def test_a_finished_multiprocess_run_resumes_and_takes_no_step(runs):
  for name in ('process0', 'process1'):
    assert runs[name]['resumed'] == {}  # No step, so no validation.
  assert 'Resumed from step 4' in runs['process0']['log']


def assert_figures_equal(actual: dict, expected: dict, keys) -> None:
  for key in keys:
    assert actual[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key


PER_PATCH_KEYS = ('mean', 'median', 'iou_0.5', 'iou_0.7', 'patches')


def test_validation_during_training_is_the_same(runs):
  expected = runs['single']['validation']
  assert expected['patches'] == 8  # 1 global batch of 8.
  for name in ('process0', 'process1'):
    assert_figures_equal(runs[name]['validation'], expected, PER_PATCH_KEYS)


def test_evaluation_per_patch_and_per_image_is_the_same(runs):
  expected = runs['single']['evaluation']
  assert expected['per_image']['num_images'] == 4
  for name in ('process0', 'process1'):
    actual = runs[name]['evaluation']
    assert_figures_equal(actual['per_patch'], expected['per_patch'],
                         PER_PATCH_KEYS)
    per_image = actual['per_image']
    assert per_image['num_images'] == 4
    assert per_image['num_proposals'] == expected['per_image']['num_proposals']
    for kind in ('segm', 'bbox'):
      assert_figures_equal(per_image[kind], expected['per_image'][kind],
                           expected['per_image'][kind])
