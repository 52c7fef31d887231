import numpy as np
import pytest

from wm_jax.data import episodes as episodes_lib

SPEC = {'frames': ((64, 64, 3), np.uint8), 'actions': ((), np.int32)}


def make_episodes(n, crash_at=None):
  for i in range(n):
    if i == crash_at:
      raise KeyboardInterrupt('killed mid-write')
    length = 3 + i
    yield {'frames': np.full((length, 64, 64, 3), i, np.uint8),
           'actions': np.arange(length, dtype=np.int32)}


def test_round_trip_keeps_order_lengths_and_metadata(tmp_path):
  episodes_lib.write_episodes(str(tmp_path), SPEC, make_episodes(5), {'env': 'CartPole-v1'})
  source = episodes_lib.open_episodes(str(tmp_path))
  assert len(source) == 5
  for i in range(5):
    assert source[i]['frames'].shape == (3 + i, 64, 64, 3) and source[i]['frames'][0, 0, 0, 0] == i
    np.testing.assert_array_equal(source[i]['actions'], np.arange(3 + i))
  assert episodes_lib.read_metadata(str(tmp_path)) == {'env': 'CartPole-v1'}


def test_killed_write_is_never_taken_for_complete(tmp_path):
  with pytest.raises(KeyboardInterrupt):
    episodes_lib.write_episodes(str(tmp_path), SPEC, make_episodes(5, crash_at=3), {})
  assert not episodes_lib.is_complete(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='No complete'):
    episodes_lib.open_episodes(str(tmp_path))
  episodes_lib.write_episodes(str(tmp_path), SPEC, make_episodes(5), {})  # A rerun completes it.
  assert len(episodes_lib.open_episodes(str(tmp_path))) == 5


def test_missing_and_empty_datasets_get_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='No complete rollout dataset'):
    episodes_lib.open_episodes(str(tmp_path / 'nothing'), 'rollout')
  with pytest.raises(ValueError, match='would be empty'):
    episodes_lib.write_episodes(str(tmp_path / 'empty'), SPEC, iter(()), {})
  assert not episodes_lib.is_complete(str(tmp_path / 'empty'))


def test_first_episodes_of_a_shard_are_the_same_bytes_as_writing_them_alone(tmp_path):
  five = episodes_lib.write_shard(str(tmp_path / 'five'), SPEC, make_episodes(5))
  cut = episodes_lib.first_episodes(five, 3, str(tmp_path / 'cut'))
  three = episodes_lib.write_shard(str(tmp_path / 'three'), SPEC, make_episodes(3))
  assert cut.lengths == three.lengths == (3, 4, 5) and cut.sizes == three.sizes
  assert (tmp_path / 'cut').read_bytes() == (tmp_path / 'three').read_bytes()
