"""Runs tests/multi_device_suite.py in a pytest process of its own with 8 forced host devices:
the device count is fixed when JAX starts, and this process has started it with 1."""

import os
import subprocess
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def test_every_trainer_and_cmaes_on_eight_devices_equals_one_device():
  env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                                    ' --xla_force_host_platform_device_count=8').strip())
  result = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
       os.path.join(TESTS_DIR, 'multi_device_suite.py')],
      cwd=os.path.dirname(TESTS_DIR), env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
