"""The JAX-versus-PyTorch measurements of experiments/bench_vs_pytorch.py.

Imports torch (a benchmark-only dependency); nothing in the package or its
tests imports this file. Inputs arrive as numpy NHWC arrays; the PyTorch side
works in NCHW and its outputs are moved back to NHWC for comparison.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import torch_deepmask
from deepmask_jax.families.deepmask.refinement import NUM_REFINEMENTS, SharpMask
from deepmask_jax.xla_options import network_jit


def _dense_forward(module, images):
  """What inference's per-level call computes (families/deepmask/proposals.py)."""
  sharp = isinstance(module, SharpMask)
  deepmask = module.deepmask if sharp else module
  features, embedding = deepmask.encode(images, crop=False)
  out = {'score': deepmask.score_logits(embedding), 'embedding': embedding}
  if sharp:
    out['horizontals'] = module.refinement.horizontal(features, crop=False)
  return out


def _decode_windows(module, embedding, windows):
  if isinstance(module, SharpMask):
    return module.refine(embedding, windows)
  return module.mask_logits(embedding)


def _nchw(array: np.ndarray, device) -> torch.Tensor:
  return torch.from_numpy(array).to(device).permute(0, 3, 1, 2).contiguous()


def _nhwc(tensor: torch.Tensor) -> np.ndarray:
  return tensor.detach().permute(0, 2, 3, 1).cpu().numpy()


def relative_error(ours, theirs) -> float:
  """max |ours - theirs| / max |theirs|."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


class SideBySide:
  """Runs one network in both frameworks on identical inputs and weights."""

  def __init__(self, device: str, variables: dict, config, repeats: int):
    self.device = torch.device(device)
    self.variables = variables
    self.config = config
    self.repeats = repeats

  def torch_model(self, name: str):
    patch = self.config.patch
    if name == 'sharpmask':
      model = torch_deepmask.build_sharpmask(
          self.variables, patch.mask_size, patch.object_window // 16)
    else:
      model = torch_deepmask.build_deepmask(self.variables, patch.mask_size,
                                            patch.label_size)
    return model.to(self.device).eval()

  def _sync(self):
    if self.device.type == 'cuda':
      torch.cuda.synchronize()

  def median_seconds(self, run_jax, run_torch) -> tuple:
    """(jax, torch) median wall times of the blocking calls, after a warm-up.

    The two alternate, so both see the same machine load (ours is shared).
    """
    run_jax()
    run_torch()
    times = []
    for _ in range(self.repeats):
      pair = []
      for run in (run_jax, run_torch):
        begin = time.perf_counter()
        run()
        pair.append(time.perf_counter() - begin)
      times.append(pair)
    return tuple(float(t) for t in np.median(np.asarray(times), axis=0))

  # Equality. ---------------------------------------------------------------

  def check_outputs(self, name, model, variables, patches, canvas) -> dict:
    """Relative errors of the patch form and the dense form (keyed by output)."""
    net = self.torch_model(name)
    ours = jax.device_get(model.apply(variables, jnp.asarray(patches)))
    ours_dense = jax.device_get(
        model.apply(variables, jnp.asarray(canvas), method=_dense_forward))
    with torch.inference_mode():
      theirs = net(_nchw(patches, self.device))
      deepmask = net.deepmask if name == 'sharpmask' else net
      features, embedding = deepmask.encode(_nchw(canvas, self.device),
                                            crop=False)
      theirs_dense = {'score': deepmask.score_logits(embedding),
                      'embedding': embedding}
      if name == 'sharpmask':
        theirs_dense['horizontals'] = net.refinement.horizontal(features,
                                                                crop=False)
    errors = {f'patch_{k}': relative_error(ours[k], theirs[k].cpu().numpy())
              for k in ('mask', 'score')}
    errors['dense_score'] = relative_error(ours_dense['score'],
                                           theirs_dense['score'].cpu().numpy())
    errors['dense_embedding'] = relative_error(
        ours_dense['embedding'], _nhwc(theirs_dense['embedding']))
    for j, h in enumerate(theirs_dense.get('horizontals', [])):
      errors[f'dense_skip{j}'] = relative_error(ours_dense['horizontals'][j],
                                                _nhwc(h))
    return errors

  # Timings: (jax seconds, torch seconds). --------------------------------------

  def time_forward(self, name, model, variables, canvases) -> tuple:
    """The dense pass over every canvas batch, input copy included."""
    params = jax.device_put(variables)
    forward = network_jit(lambda v, x: model.apply(v, x, method=_dense_forward))

    def run_jax():
      jax.block_until_ready([forward(params, jnp.asarray(c)) for c in canvases])

    net = self.torch_model(name)
    deepmask = net.deepmask if name == 'sharpmask' else net

    def run_torch():
      with torch.inference_mode():
        for canvas in canvases:
          features, embedding = deepmask.encode(_nchw(canvas, self.device),
                                                crop=False)
          deepmask.score_logits(embedding)
          if name == 'sharpmask':
            net.refinement.horizontal(features, crop=False)
        self._sync()

    return self.median_seconds(run_jax, run_torch)

  def time_decode(self, name, model, variables, windows: int) -> tuple:
    """Mask logits of `windows` windows from device-resident inputs."""
    rng = np.random.default_rng(2)
    embedding = rng.normal(size=(windows, self.config.head.embedding)
                           ).astype(np.float32)
    fsz = self.config.patch.object_window // 16
    km = self.config.refine.km
    skips = [rng.normal(size=(windows, fsz * 2 ** j, fsz * 2 ** j,
                              km // 2 ** (j + 1))).astype(np.float32)
             for j in range(NUM_REFINEMENTS)] if name == 'sharpmask' else None
    params = jax.device_put(variables)
    decode = network_jit(lambda v, e, w: model.apply(v, e, w,
                                                     method=_decode_windows))
    jax_inputs = jax.device_put((embedding, skips))

    def run_jax():
      decode(params, *jax_inputs).block_until_ready()

    net = self.torch_model(name)
    torch_embedding = torch.from_numpy(embedding).to(self.device)
    torch_skips = [_nchw(s, self.device) for s in skips or []]

    def run_torch():
      with torch.inference_mode():
        if name == 'sharpmask':
          net.refinement.refine(torch_embedding, torch_skips)
        else:
          net.mask_logits(torch_embedding[:, :, None, None])
        self._sync()

    return self.median_seconds(run_jax, run_torch)

  def time_train_step(self, name, runner_state, batch, config) -> tuple:
    """((jax s, torch s) per step, relative error of the first step's loss)."""
    runner, state = runner_state
    first = {}

    def run_jax():
      nonlocal state
      state, metrics = runner.step(state, batch, 'mask')
      first.setdefault('jax', float(metrics['loss']))
      jax.block_until_ready(state)

    net = self.torch_model(name).train()
    trained = net.refinement if name == 'sharpmask' else net
    net.requires_grad_(False)
    trained.requires_grad_(True)
    if name != 'sharpmask':  # Mask batches update the trunk and mask head.
      net.score_hidden_layer.requires_grad_(False)
      net.score_out.requires_grad_(False)
    optimizer = torch.optim.SGD(
        [p for p in net.parameters() if p.requires_grad],
        lr=float(config.schedule.learning_rates[0]), momentum=float(config.momentum),
        weight_decay=float(config.weight_decay))

    def run_torch():
      images = _nchw(batch['image'], self.device)
      labels = torch.from_numpy(batch['mask']).to(self.device)
      logits = self._torch_mask_logits(name, net, images)
      per_sample = F.softplus(-labels * logits).mean(dim=(1, 2))
      loss = per_sample.sum()  # families/deepmask/losses.py: mean times the batch.
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
      first.setdefault('torch', float(per_sample.detach().mean()))
      self._sync()

    times = self.median_seconds(run_jax, run_torch)
    return times, relative_error(first['jax'], first['torch'])

  @staticmethod
  def _torch_mask_logits(name, net, images):
    if name != 'sharpmask':
      return net(images)['mask']
    with torch.no_grad():  # The DeepMask part is frozen in stage 2.
      features, embedding = net.deepmask.encode(images)
    return net.refinement.refine(embedding[:, :, 0, 0],
                                 net.refinement.horizontal(features))
