"""Pieces every trainer shares: the device mesh, batch placement, checkpoints, image strips."""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P
from PIL import Image

from wm_jax.config import check_same


def make_mesh(num_devices: int) -> jax.sharding.Mesh:
  """A 1D ('data',) mesh over the first `num_devices` devices (config key `mesh.data`)."""
  available = jax.device_count()
  if not 1 <= num_devices <= available:
    raise ValueError(f'mesh.data={num_devices}, but {available} device(s) are available.')
  # Auto axes: XLA propagates the batch sharding through the model (no per-op annotations).
  return jax.make_mesh((num_devices,), ('data',), devices=jax.devices()[:num_devices],
                       axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: jax.sharding.Mesh, batch_size: int) -> NamedSharding:
  """Shards axis 0 of a batch over the mesh's 'data' axis."""
  if batch_size % mesh.shape['data']:
    raise ValueError(f'The batch size ({batch_size}) must divide evenly over mesh.data='
                     f'{mesh.shape["data"]} devices.')
  return NamedSharding(mesh, P('data'))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def checkpoint_manager(directory: str, config_fingerprint: Mapping[str, Any],
                       max_to_keep: int = 2) -> ocp.CheckpointManager:
  """An orbax CheckpointManager that refuses a directory written under another configuration.

  The fingerprint is stored as the manager's metadata when the directory is first created.
  """
  directory = os.path.abspath(directory)
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      metadata=dict(config_fingerprint))
  if manager.latest_step() is not None:
    check_same(manager.metadata().custom_metadata, config_fingerprint,
               f'The checkpoints in {directory}')
  return manager


def image_strip(rows: list[np.ndarray]) -> np.ndarray:
  """Rows of frames [N, H, W, 3] (uint8, or float in [0, 1]) -> one [rows*H, N*W, 3] uint8 image."""
  def to_uint8(x):
    x = np.asarray(x)
    return x if x.dtype == np.uint8 else np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
  return np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in rows], axis=0)


def save_png(path: str, image: np.ndarray, scale: int = 2) -> None:
  height, width = image.shape[:2]
  Image.fromarray(image).resize((width * scale, height * scale), Image.NEAREST).save(path)
