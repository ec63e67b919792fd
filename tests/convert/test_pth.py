"""PyTorch EmbedMask `.pth` (both containers) and Detectron `.pkl` conversion:
the converted models compute what the PyTorch modules compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax import evaluate, families
from deepmask_jax.config_schema import get_config
from deepmask_jax.convert import ConversionError, convert, read_weights
from deepmask_jax.families.embedmask.model import EmbedMask
from deepmask_jax.models import Trunk
from deepmask_jax.testing import embedmask_reference as reference
from deepmask_jax.testing import pth_writer
from deepmask_jax.testing.compare import embedmask_errors
from deepmask_jax.testing.pth_writer import maskrcnn_checkpoint
from deepmask_jax.testing.torch_reference import relative_error
from deepmask_jax.train.initialization import with_pretrained_trunk
from tests.families.embedmask.test_family import tiny_embedmask_config

GEOMETRY = reference.Geometry()
HEIGHT, WIDTH = 64, 96
TOLERANCE = 1e-4
WRITERS = {'zip': pth_writer.write_zip, 'legacy': pth_writer.write_legacy}


def _images(seed=0, batch=1):
  return np.random.default_rng(seed).normal(size=(batch, 3, HEIGHT, WIDTH))


@pytest.mark.parametrize('container', ['zip', 'legacy'])
def test_embedmask_matches_pytorch_modules(tmp_path, container):
  state = reference.embedmask_state(GEOMETRY, seed=1)
  path = str(tmp_path / f'{container}.pth')
  WRITERS[container](path, maskrcnn_checkpoint(state))
  conversion = read_weights(path)
  assert conversion.kind == 'embedmask'
  config = conversion.config
  assert (config.embedmask.num_classes, config.embedmask.embed_dim,
          config.embedmask.num_convs, config.embedmask.fpn_channels) == (
              3, 5, 2, 8)
  assert tuple(config.trunk.depths) == GEOMETRY.depths
  assert config.trunk.stride_in_1x1 and config.model == 'embedmask'
  assert any("ignored iteration, optimizer, scheduler" in n
             for n in conversion.notes), conversion.notes
  errors = embedmask_errors(conversion, state, _images())
  print(f'{container}: {errors}')
  assert max(errors.values()) < TOLERANCE, errors


def test_v2_checkpoint_gives_the_same_probabilities(tmp_path):
  state = reference.embedmask_state(GEOMETRY, seed=2, version=2)
  path = str(tmp_path / 'v2.pth')
  pth_writer.write_zip(path, state)  # A bare state dict.
  conversion = read_weights(path)
  assert any('V2 checkpoint' in n for n in conversion.notes)
  errors = embedmask_errors(conversion, state, _images(1), version=2)
  assert max(errors.values()) < TOLERANCE, errors


def test_tensors_that_share_a_strided_storage(tmp_path):
  """A transposed view at an offset into a storage shared by two tensors."""
  state = dict(reference.embedmask_state(GEOMETRY, seed=3))
  key = 'rpn.head.cls_logits.weight'
  weight = state[key]  # [3, 8, 3, 3]
  flat = weight.transpose(1, 0, 2, 3).reshape(-1)  # Stored as [8, 3, 3, 3].
  storage = pth_writer.Storage(np.concatenate([np.zeros(5, np.float32), flat]))
  state[key] = pth_writer.Tensor(storage, 5, weight.shape, (9, 27, 3, 1))
  bias_key = 'rpn.head.cls_logits.bias'
  storage.data = np.concatenate([storage.data, state[bias_key]])
  state[bias_key] = pth_writer.Tensor(storage, 5 + flat.size, (3,), (1,))
  path = str(tmp_path / 'views.pth')
  pth_writer.write_legacy(path, state)
  head = read_weights(path).variables['params']['head']['cls_logits']
  np.testing.assert_array_equal(head['kernel'], weight.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      head['bias'], reference.embedmask_state(GEOMETRY, 3)[bias_key])


def _damaged(state, damage):
  state = dict(state)
  damage(state)
  return state


@pytest.mark.parametrize('damage, message', [
    (lambda s: s.pop('rpn.head.centerness.bias'),
     'has no rpn.head.centerness.bias'),
    (lambda s: s.__setitem__('rpn.head.extra.weight', np.ones(3, np.float32)),
     'unexpected key rpn.head.extra.weight'),
    (lambda s: s.__setitem__('backbone.body.layer2.0.conv2.weight',
                             np.ones((4, 4, 3, 1), np.float32)),
     'backbone.body.layer2.0.conv2.weight has shape (4, 4, 3, 1), expected '
     '(4, 4, 3, 3)'),
    (lambda s: s.pop('rpn.head.margin_scales.3.scale'),
     'has no rpn.head.margin_scales.3.scale'),
    (lambda s: s.pop('rpn.head.proposal_margin_pred.weight'),
     'not an EmbedMask checkpoint'),
])
def test_bad_state_dict_names_the_key(tmp_path, damage, message):
  path = str(tmp_path / 'bad.pth')
  pth_writer.write_zip(path, _damaged(reference.embedmask_state(GEOMETRY, 4),
                                      damage))
  with pytest.raises(ConversionError) as error:
    read_weights(path)
  assert message in str(error.value) and path in str(error.value)
  assert '\n' not in str(error.value)


def test_converted_embedmask_directory_loads_everywhere(tmp_path):
  state = reference.embedmask_state(GEOMETRY, seed=5)
  path, out = str(tmp_path / 'em.pth'), str(tmp_path / 'em')
  pth_writer.write_legacy(path, maskrcnn_checkpoint(state))
  convert(path, out)
  family, model, variables = families.load(out)
  assert family.name == 'embedmask' and isinstance(model, EmbedMask)
  images = _images(2)
  converted = read_weights(path)
  converted.variables = variables  # As read back from the directory.
  assert max(embedmask_errors(converted, state, images).values()) < TOLERANCE
  predictor = families.predictor_from_path(out, results_per_image=7)
  assert type(predictor).__name__ == 'InstanceSegmenter'
  eval_config = get_config()
  eval_config.data.name = 'elsewhere'
  merged, _, _, _ = evaluate.load_for_evaluation(eval_config, out)
  assert merged.name == 'embedmask' and merged.config.data.name == 'elsewhere'
  assert (merged.config.embedmask.num_classes
          == family.config.embedmask.num_classes)
  # Its trunk starts a training run (the MSRA layout: stride in the 1x1,
  # a frozen affine after every conv).
  run_config = tiny_embedmask_config(**{
      'trunk.widths': GEOMETRY.widths, 'trunk.depths': GEOMETRY.depths,
      'trunk.stride_in_1x1': True, 'trunk.norm': 'frozen_per_conv',
      'trunk_init': out})
  fresh = with_pretrained_trunk(_zeros_like(variables), run_config)
  np.testing.assert_array_equal(
      fresh['params']['trunk']['layer2_0']['conv1']['conv']['kernel'],
      variables['params']['trunk']['layer2_0']['conv1']['conv']['kernel'])
  assert not np.any(fresh['params']['head']['cls_logits']['kernel'])


def _zeros_like(variables):
  """Stands for a fresh init of the same geometry (no init to compile)."""
  return jax.tree.map(np.zeros_like, variables)


def test_detectron_pkl_becomes_an_msra_trunk(tmp_path):
  blobs, state = reference.caffe2_blobs(GEOMETRY, seed=6)
  path, out = str(tmp_path / 'R-50.pkl'), str(tmp_path / 'msra')
  pth_writer.write_detectron_pkl(path, blobs)
  conversion = convert(path, out)
  assert conversion.kind == 'resnet'
  assert any('dropped 3 blobs: conv1_b, fc1000_b, fc1000_w' in n
             for n in conversion.notes), conversion.notes
  config = conversion.config
  assert config.trunk.stride_in_1x1 and config.trunk.padding == 'zero'
  assert config.trunk.norm == 'frozen_per_conv'
  trunk = Trunk(padding='zero', stem_width=config.trunk.stem_width,
                widths=config.trunk.widths, depths=config.trunk.depths,
                stride_in_1x1=True, norm='frozen_per_conv')
  variables = {c: tree['trunk'] for c, tree in conversion.variables.items()}
  images = _images(3)
  ours = jax.jit(trunk.apply)(variables, jnp.asarray(images.transpose(0, 2, 3, 1),
                                            jnp.float32))
  theirs = reference.resnet_body(state, images, reference.frozen_bn, GEOMETRY)
  for layer, expected in enumerate(theirs, 1):
    got = np.asarray(ours[f'layer{layer}']).transpose(0, 3, 1, 2)
    assert relative_error(got, expected) < TOLERANCE, layer
  # config.trunk_init takes it; stride_in_1x1 must agree.
  model_variables = _zeros_like(read_weights(_write_embedmask(tmp_path))
                                .variables)
  for stride_in_1x1 in (True, False):
    run_config = tiny_embedmask_config(**{
        'trunk.widths': GEOMETRY.widths, 'trunk.depths': GEOMETRY.depths,
        'trunk.stride_in_1x1': stride_in_1x1,
        'trunk.norm': 'frozen_per_conv', 'trunk_init': out})
    if not stride_in_1x1:
      with pytest.raises(ValueError, match='stride_in_1x1=True'):
        with_pretrained_trunk(model_variables, run_config)
      continue
    fresh = with_pretrained_trunk(model_variables, run_config)
    np.testing.assert_array_equal(
        fresh['constants']['trunk']['affine1']['scale'],
        blobs['res_conv1_bn_s'])
    np.testing.assert_array_equal(
        fresh['params']['trunk']['layer4_0']['conv2']['conv']['kernel'],
        blobs['res5_0_branch2b_w'].transpose(2, 3, 1, 0))
    # Nothing folded: bn3 and the projection's BN stay apart from the convs.
    block = {c: fresh[c]['trunk']['layer2_0'] for c in fresh}
    for got, blob in (
        (block['params']['conv3']['conv']['kernel'], 'res3_0_branch2c_w'),
        (block['params']['projection']['conv']['kernel'], 'res3_0_branch1_w'),
        (block['constants']['affine3']['scale'], 'res3_0_branch2c_bn_s'),
        (block['constants']['affine_projection']['bias'],
         'res3_0_branch1_bn_b')):
      expected = blobs[blob]
      np.testing.assert_array_equal(
          got, expected.transpose(2, 3, 1, 0) if expected.ndim == 4
          else expected)


def _write_embedmask(tmp_path, seed=8) -> str:
  path = str(tmp_path / f'embedmask_{seed}.pth')
  pth_writer.write_zip(path, reference.embedmask_state(GEOMETRY, seed))
  return path


def test_bare_blob_dict_and_unknown_blob(tmp_path):
  blobs, _ = reference.caffe2_blobs(GEOMETRY, seed=7)
  path = str(tmp_path / 'bare.pkl')
  pth_writer.write_detectron_pkl(path, dict(blobs, res2_0_branch2a_b=np.ones(
      4, np.float32)), wrap=False)
  with pytest.raises(ConversionError, match='unexpected key res2_0_branch2a_b'):
    read_weights(path)
