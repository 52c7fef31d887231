"""A multi-process (multi-host) run for real: two processes on localhost, two CPU devices each,
joined by `jax.distributed` (gloo collectives), train V over one 4-device mesh, each process
reading its own shard of the episodes; the run equals one process training on the same global
batches, and its checkpoint, written for all by orbax, restores on this 1-device process.
A resume on another number of processes, and a workdir whose lock process 0 cannot take, stop
every process with an error naming why."""

import json
import os
import socket
import subprocess
import sys

import grain
import jax
import numpy as np
import pytest

from wm_jax.common import training
from wm_jax.world_models import configs, run
from wm_jax.world_models.frames import frame_batches
from wm_jax.world_models.stages import vae
from wm_jax.world_models.workdir import Workdir, open_rollouts

from vae_test import with_rollouts

NUM_STEPS = 4

def two_process_config():
  """The config of `_run_two_processes`'s command line."""
  config = configs.get('default:tiny')
  config.mesh.data = 4
  config.vae.update(num_steps=NUM_STEPS, log_every=1, checkpoint_every=2)
  return config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_two_processes(workdir: str, expect_success: bool = True) -> list[tuple[int, str]]:
  """The command line's V stage, run by two processes of two (host) devices each: (return
  code, output) of each."""
  repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  command = [sys.executable, '-m', 'experiments.world_models', '--stage=vae',
             f'--workdir={workdir}', f'--coordinator_address=localhost:{_free_port()}',
             '--num_processes=2', '--config=wm_jax/world_models/configs/default.py:tiny',
             '--config.mesh.data=4', f'--config.vae.num_steps={NUM_STEPS}',
             '--config.vae.log_every=1', '--config.vae.checkpoint_every=2']
  processes = [subprocess.Popen([*command, f'--process_id={i}'], cwd=repository, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for i, (process, output) in enumerate(zip(processes, outputs)):
    assert expect_success <= (process.returncode == 0), f'process {i}:\n{output[-5000:]}'
  return [(p.returncode, output) for p, output in zip(processes, outputs)]


def _one_process_run(workdir: str):
  """V trained here on one device, on the global batches of the two processes: process p's
  shard of the episodes gives rows [8p, 8p + 8) of each batch of 16."""
  config = two_process_config()
  episodes = open_rollouts(config, workdir)
  shards = [iter(frame_batches(episodes, config.vae.batch_size // 2, seed=config.seed,
                               shuffle_window=config.vae.shuffle_window,
                               max_episode_length=config.env.max_steps,
                               shard=grain.sharding.ShardOptions(p, 2)))
            for p in range(2)]
  step = vae.jit_train_step(config, training.make_mesh(1))
  state = vae.create_train_state(config, jax.random.PRNGKey(config.seed))
  losses = []
  for _ in range(NUM_STEPS):
    state, metrics = step(state, np.concatenate([next(shard) for shard in shards]))
    losses.append(float(metrics['loss']))
  return state.params, losses


def test_two_processes_train_as_one_and_their_checkpoint_restores_on_one_device(
    rollout_workdir, tmp_path):
  workdir = with_rollouts(rollout_workdir, str(tmp_path))
  _run_two_processes(workdir)
  params, losses = _one_process_run(workdir)
  logged = training.read_metrics(os.path.join(Workdir(workdir).vae, 'metrics.jsonl'))
  np.testing.assert_array_equal(logged['vae/loss'][0], np.arange(1, NUM_STEPS + 1))
  np.testing.assert_allclose(logged['vae/loss'][1], losses, rtol=1e-4)
  restored = vae.restore_params(two_process_config(), workdir)  # 4 devices' checkpoint, 1 here.
  # Steps of Adam (lr x m / sqrt(v)) on gradients summed in another order: m / sqrt(v) turns
  # the rounding of a near-zero gradient into up to a whole step for a few weights, so every
  # weight within two steps of the learning rate, nearly all within 1e-5 (measured for two
  # devices against one: 1 weight of 4.3M past 1e-5 with jax 0.10.2; 0.11%, up to 4.5e-4, with
  # jax 0.11.2).
  differences = np.concatenate([np.abs(a - b).ravel() for a, b in
                                zip(jax.tree.leaves(restored), jax.tree.leaves(params))])
  assert differences.max() <= 2 * two_process_config().vae.learning_rate
  assert np.mean(differences > 1e-5) < 1e-2, np.mean(differences > 1e-5)
  data_positions = os.listdir(os.path.join(Workdir(workdir).checkpoints('vae'), str(NUM_STEPS),
                                           'data'))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(data_positions)
  longer = two_process_config()  # Continued on this process's one device.
  longer.mesh.data = 1
  longer.vae.num_steps = NUM_STEPS + 2
  with pytest.raises(ValueError, match='written by a run of 2 process.*this run has 1'):
    run(longer, workdir, ['vae'])


def test_a_lock_process_0_cannot_take_stops_every_process(rollout_workdir, tmp_path):
  workdir = with_rollouts(rollout_workdir, str(tmp_path))
  with open(os.path.join(workdir, '.lock'), 'w') as f:  # Held by this (running) process.
    json.dump({'host': socket.gethostname(), 'pid': os.getpid()}, f)
  (code_0, output_0), (code_1, output_1) = _run_two_processes(workdir, expect_success=False)
  assert code_0 != 0 and f'is in use by process {os.getpid()}' in output_0, output_0[-3000:]
  assert code_1 != 0 and 'Process 0 could not take the lock' in output_1, output_1[-3000:]
