"""One process at a time on a workdir: every entry point refuses a workdir another process holds."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import tiny_vqvae_config
from wm_jax import videogpt, world_models
from wm_jax.common.workdir_lock import LOCK_FILE, workdir_lock

_HOLD = '''
import sys, time
from wm_jax.common.workdir_lock import workdir_lock
with workdir_lock(sys.argv[1]):
  print('held', flush=True)
  time.sleep(120)
'''


@pytest.fixture
def held_workdir(tmp_path):
  """A workdir whose lock another (live) process holds."""
  workdir = str(tmp_path / 'held')
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, workdir], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert holder.stdout.readline().strip() == 'held'
  yield workdir, holder.pid
  holder.kill()
  holder.wait()


def test_a_second_process_is_refused_by_every_entry_point(held_workdir, clip_workdir):
  workdir, pid = held_workdir
  match = f'in use by process {pid} on {socket.gethostname()}'
  with pytest.raises(RuntimeError, match=match):
    world_models.run(world_models.configs.get('default:tiny'), workdir, ['collect'])
  with pytest.raises(RuntimeError, match=match):
    world_models.STAGES['vae'](world_models.configs.get('default:tiny'), workdir)
  with pytest.raises(RuntimeError, match=match):
    videogpt.vqvae.train_and_evaluate(tiny_vqvae_config(clip_workdir), workdir)
  assert os.listdir(workdir) == [LOCK_FILE]  # Nothing written.


def test_a_lock_of_a_killed_process_is_taken_over(tmp_path):
  finished = subprocess.Popen([sys.executable, '-c', 'pass'])
  finished.wait()
  path = tmp_path / LOCK_FILE
  path.write_text(json.dumps({'host': socket.gethostname(), 'pid': finished.pid}))
  with workdir_lock(str(tmp_path)):
    assert json.loads(path.read_text()) == {'host': socket.gethostname(), 'pid': os.getpid()}
    with workdir_lock(str(tmp_path)):  # The holder may enter again (a pipeline's stages).
      pass
    assert path.exists()
  assert not path.exists()


def test_a_lock_held_on_another_host_is_refused(tmp_path):
  (tmp_path / LOCK_FILE).write_text(json.dumps({'host': 'elsewhere', 'pid': 1}))
  with pytest.raises(RuntimeError, match='in use by process 1 on elsewhere'):
    with workdir_lock(str(tmp_path)):
      pass
  assert (tmp_path / LOCK_FILE).exists()


def test_an_empty_lock_left_by_a_killed_writer_is_taken_over(tmp_path):
  (tmp_path / LOCK_FILE).write_text('')  # Created, then killed before writing its holder.
  with workdir_lock(str(tmp_path)):
    assert json.loads((tmp_path / LOCK_FILE).read_text())['pid'] == os.getpid()
