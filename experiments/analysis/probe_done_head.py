"""How M's done head would end the dream on real episodes: each round's episodes (round 0: the
random policy's; round r > 0: those collected with round r-1's C) run through one round's M
(z = mu), its done head thresholded as in the dream.

  python -m experiments.analysis.probe_done_head \
      --config=wm_jax/world_models/configs/doom_take_cover_small.py \
      --workdir=runs/doom_small [--m_round=0] [--threshold=0]

Episodes of rounds after `--m_round` are held out from that M. Prints, per round of episodes,
the deaths, the fraction of deaths whose last step fires and the fraction of other steps that
fire (each fire ends a dream episode).
"""

import os

import jax
from absl import app, flags
from ml_collections import config_flags

from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models import Workdir, configs
from wm_jax.world_models.stages import mdn
from wm_jax.world_models.world import mdn_model

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(configs.__file__), 'default.py'),
    'The config the workdir was run with.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A World Models workdir.', required=True)
_M_ROUND = flags.DEFINE_integer('m_round', 0, 'Whose M: round of the iterative procedure.')
_THRESHOLD = flags.DEFINE_float('threshold', 0.0, 'Done logit above which a step fires.')


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  paths = Workdir(workdir)
  rounds = 0
  while episodes_lib.is_complete(paths.latents(rounds)):
    rounds += 1
  model = mdn_model(config)
  if not model.predict_done:
    raise app.UsageError('The probe needs an M with a done head (mdn.model.predict_done=True).')
  params = mdn.restore_params(config, workdir, _M_ROUND.value)
  data, lengths = mdn.load_sequences(config, workdir, rounds - 1)
  done_logits = mdn.head_outputs(model, params, data, lengths)['done_logits']
  first_episode = 0
  for r in range(rounds):
    count = len(episodes_lib.open_episodes(paths.latents(r), 'latent'))
    steps = slice(int(lengths[:first_episode].sum()),
                  int(lengths[:first_episode + count].sum()))
    result = mdn.done_detection(done_logits[steps], jax.tree.map(lambda x: x[steps], data),
                                lengths[first_episode:first_episode + count], _THRESHOLD.value)
    seen = 'trained on' if r <= _M_ROUND.value else 'held out'
    print(f"round {r}'s {count} episodes ({seen}) through round {_M_ROUND.value}'s M: "
          f"{result['deaths']} deaths, {result['death_recall']:.2f} of them fire, "
          f"{result['false_fire_rate']:.4f} of other steps fire", flush=True)
    first_episode += count


if __name__ == '__main__':
  app.run(main)
