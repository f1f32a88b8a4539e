"""Gin without global surprises: parsing for a moment leaves the caller's
configuration as it was."""
import gin
import pytest

from primer_mtf import configs


def test_preserved_restores_bindings_imports_and_lock():
  configs.parse("primer_ez", "tiny", "cpu", gin_params=["d_model = 96"])
  before = gin.config_str()
  with configs.preserved():
    configs.parse("transformer", "small", "cpu_2x2")
    assert configs.query("Unitransformer.d_model") != 96
  assert gin.config_str() == before
  assert configs.query("Unitransformer.d_model") == 96


def test_preserved_restores_after_an_error():
  configs.parse("primer_ez", "tiny", "cpu")
  before = gin.config_str()
  with pytest.raises(ValueError):
    with configs.preserved():
      configs.clear()
      raise ValueError("boom")
  assert gin.config_str() == before


def test_without_it_a_parse_replaces_the_configuration():
  """The control: parse alone does clear what was there."""
  configs.parse("primer_ez", "tiny", "cpu", gin_params=["d_model = 96"])
  configs.parse("transformer", "tiny", "cpu")
  assert configs.query("Unitransformer.d_model") != 96


@pytest.mark.graph
def test_the_planner_keeps_its_callers_configuration():
  from primer_mtf.planning import planner  # pylint: disable=g-import-not-at-top
  configs.parse("primer_ez", "tiny", "cpu", gin_params=["d_model = 96"])
  before = gin.config_str()
  planner.plan("transformer", "tiny", "cpu")
  assert gin.config_str() == before


def test_bindings_read_every_binding_and_macro_exactly():
  configs.parse("primer_ez", "tiny", "cpu", gin_params=[
      "DenseReluDense.activation = 'gelu'", "utils.run.train_steps = 7"])
  found = configs.bindings()
  assert found["DenseReluDense.activation"] == "'gelu'"
  assert found["run.train_steps"] == "7"
  assert found["d_model"] == str(configs.query("Unitransformer.d_model"))
  # a value gin prints over several lines is read whole
  assert found["LayerStack.sublayers_per_layer"].startswith("[") and \
      found["LayerStack.sublayers_per_layer"].endswith("]")
