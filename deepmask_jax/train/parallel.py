"""Runs the per-device train step over all devices: shard_map (default) or pmap.

Both wrap the same function (train_step.py) with the named axis 'data':
  * 'shard_map': `jax.jit(jax.shard_map(step, mesh, in_specs=(P(), P('data')),
    out_specs=(P(), P())))` over a 1-D mesh of every device (all processes);
    the state is a replicated global array, batches global arrays built from
    each process's local slice.
  * 'pmap': `jax.pmap(step, 'data', in_axes=(None, 0), out_axes=None)` over the
    local devices, the batch reshaped to [local devices, b / devices, ...].
"""

import os

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from deepmask_jax.errors import InputError
from deepmask_jax.train.train_step import AXIS
from deepmask_jax.xla_options import network_jit


def initialize_distributed() -> None:
  """Joins JAX's distributed runtime (`--multihost`): one process per host.

  Settings come from the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU are
  detected by jax) or from JAX_COORDINATOR_ADDRESS (host:port of process 0),
  JAX_NUM_PROCESSES and JAX_PROCESS_ID, which jax itself reads only in part.
  CPU-only processes talk through gloo, jax's default CPU collectives.
  """
  count, index = (os.environ.get(name) for name in
                  ('JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'))
  jax.distributed.initialize(num_processes=int(count) if count else None,
                             process_id=int(index) if index else None)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


class DataParallel:
  """Applies per-device step functions to a replicated state and a sharded batch.

  Args:
    step_fns: {head: per-device step(state, batch) -> (state, metrics)}.
    batch_keys: {head: the batch arrays a step of that head takes}.
    parallel: 'shard_map' or 'pmap'.
    devices: the devices to use (default all; tests compare 1 with 8).
  """

  def __init__(self, step_fns: dict, batch_keys: dict,
               parallel: str = 'shard_map', devices=None):
    if parallel not in ('shard_map', 'pmap'):
      raise InputError(f"config.parallel must be 'shard_map' or 'pmap', "
                       f'got {parallel!r}')
    if parallel == 'pmap' and jax.process_count() > 1:
      # pmap over this process's devices would average gradients per process.
      raise InputError("config.parallel='pmap' runs in one process only; use "
                       "'shard_map' with --multihost")
    self.parallel = parallel
    self.batch_keys = batch_keys
    self.mesh = make_mesh(devices)
    self.local_devices = [d for d in self.mesh.devices.flat
                          if d.process_index == jax.process_index()]
    self.replicated = NamedSharding(self.mesh, P())
    # Where the TrainState lives: pmap keeps it on one device (in_axes=None),
    # shard_map replicates it over every device of every process.
    self.state_sharding = (
        jax.sharding.SingleDeviceSharding(self.local_devices[0])
        if parallel == 'pmap' else self.replicated)
    self.sharded = NamedSharding(self.mesh, P(AXIS))
    self._steps = {head: self._compile(fn) for head, fn in step_fns.items()}

  def _compile(self, fn):
    if self.parallel == 'pmap':
      return jax.pmap(fn, axis_name=AXIS, in_axes=(None, 0), out_axes=None,
                      devices=self.local_devices)
    # check_vma=False keeps pmap's semantics: gradients w.r.t. the replicated
    # state stay per-device until the step's explicit lax.pmean. With
    # varying-manual-axes checking on, shard_map would already sum them over
    # devices when differentiating a replicated input, and the pmean would
    # then average those sums (an 8x larger step on 8 devices).
    return network_jit(
        jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                      out_specs=(P(), P()), check_vma=False),
        donate_argnums=0)

  def replicate(self, state):
    """Places a host state (the same in every process) on `state_sharding`."""
    return jax.device_put(state, self.state_sharding)

  def shard(self, batch: dict, head: str) -> dict:
    """This process's numpy batch -> device arrays for the given head."""
    arrays = {k: batch[k] for k in self.batch_keys[head]}
    if self.parallel == 'pmap':
      n = len(self.local_devices)
      return {k: v.reshape((n, v.shape[0] // n) + v.shape[1:])
              for k, v in arrays.items()}
    return {k: jax.make_array_from_process_local_data(self.sharded, v)
            for k, v in arrays.items()}

  @property
  def evaluation_shard(self):
    """Global batch -> arrays sharded over the mesh, for evaluation passes;
    None under pmap, whose state lives on one device: evaluate there."""
    if self.parallel == 'pmap':
      return None
    return lambda batch: {
        k: jax.make_array_from_process_local_data(self.sharded, v)
        for k, v in batch.items()}

  def step(self, state, batch: dict, head: str):
    """One step of the given head (the family tells it from the batch)."""
    if head not in self._steps:
      raise ValueError(f'this model trains no {head} head (it trains '
                       f'{sorted(self._steps)})')
    return self._steps[head](state, self.shard(batch, head))


def check_batch_divisible(global_batch: int) -> None:
  """Fails early with a clear message when devices cannot split the batch."""
  devices = jax.device_count()
  if global_batch % devices or global_batch % jax.process_count():
    raise InputError(f'batch_size {global_batch} must be divisible by the '
                     f'{devices} devices and {jax.process_count()} processes')
