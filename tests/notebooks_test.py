"""The Colab notebooks run headless at tiny sizes (papermill, a fresh kernel each), the World
Models one over a half-finished workdir, and are committed without outputs."""

import os

import nbformat
import papermill
import pytest

from conftest import CACHE_DIR
from wm_jax import world_models
from wm_jax.data import episodes

COLAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'colab')
NOTEBOOKS = sorted(name for name in os.listdir(COLAB) if name.endswith('.ipynb'))

# Per notebook: its tiny parameters beside a workdir, and how many pictures each kind of output
# must hold at least (figures and PNGs as image/png, animations as image/gif, tables as markdown).
RUNS = {
    'world_models.ipynb': ({'SIZE': 'tiny'}, {'image/png': 5, 'image/gif': 2, 'text/markdown': 1}),
    'videogpt.ipynb': ({'SIZE': 'tiny', 'DATA_DIR': 'tensorflow_datasets'},
                       {'image/png': 2, 'image/gif': 3, 'text/markdown': 2}),
}


def outputs_of(notebook) -> list[dict]:
  return [output for cell in notebook.cells if cell.cell_type == 'code'
          for output in cell.get('outputs', [])]


def test_every_notebook_has_a_tiny_run():
  assert set(NOTEBOOKS) == set(RUNS)


@pytest.mark.parametrize('name', sorted(RUNS))
def test_notebook_runs_headless_with_its_pictures(name, tmp_path, monkeypatch):
  parameters, expected = RUNS[name]
  parameters = {key: str(tmp_path / value) if key == 'DATA_DIR' else value
                for key, value in parameters.items()}
  paths = world_models.Workdir(str(tmp_path / 'workdir'))
  if name == 'world_models.ipynb':
    # As if the runtime had disconnected during V's training: rollouts done, V at step 4 of 6.
    config = world_models.configs.get('default:tiny')
    config.vae.num_steps = 4
    world_models.run(config, paths.root, ['collect', 'vae'])
    # Files a redone stage would write again (the rollouts' dataset_info.json) or replace.
    done = {path: os.path.getmtime(path) for path in (
        os.path.join(episodes.dataset_dir(paths.rollouts), 'dataset_info.json'),
        os.path.join(paths.checkpoints('vae'), '4'))}
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', CACHE_DIR)  # The kernel inherits these.
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
  out = str(tmp_path / name)
  # Raises PapermillExecutionError, naming the cell, if any cell raises.
  papermill.execute_notebook(os.path.join(COLAB, name), out,
                             parameters={**parameters, 'WORKDIR': paths.root}, cwd=COLAB,
                             progress_bar=False, kernel_name='python3')
  executed = nbformat.read(out, as_version=4)
  kinds = [kind for output in outputs_of(executed) for kind in output.get('data', {})]
  for kind, count in expected.items():
    assert kinds.count(kind) >= count, (kind, kinds)
  assert not [o for o in outputs_of(executed) if o.output_type == 'error']
  if name == 'world_models.ipynb':  # Running the cells again kept what was done, trained V on.
    assert {path: os.path.getmtime(path) for path in done} == done
    assert os.path.isdir(os.path.join(paths.checkpoints('vae'), '6'))


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_is_committed_stripped_with_a_parameters_cell(name):
  """Outputs stay out of git (`nbstripout colab/*.ipynb`, or the pre-commit hook)."""
  notebook = nbformat.read(os.path.join(COLAB, name), as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == 'code']
  assert all(not cell.outputs and cell.execution_count is None for cell in code), (
      f'{name} holds outputs: run nbstripout colab/{name}')
  assert 'papermill' not in notebook.metadata, f'{name} is a papermill output, not the notebook'
  tags = [cell.metadata.get('tags', []) for cell in code]
  assert tags.count(['parameters']) == 1 and not any('injected-parameters' in t for t in tags)
