"""The package's import graph has no cycle (grimp reads every import statement,
those inside functions included), and the code inside training does not import
the commands."""
import grimp
import pytest


@pytest.fixture(scope="module")
def graph():
  return grimp.build_graph("primer_mtf", cache_dir=None)


def cycles(graph):
  """Each (module, module it imports, chain back) that closes a cycle."""
  found = []
  for importer in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(importer)):
      chain = graph.find_shortest_chain(importer=imported, imported=importer)
      if chain:
        found.append((importer, imported, chain))
  return found


def test_no_import_cycle(graph):
  assert cycles(graph) == []


def test_a_cycle_is_found():
  """The check itself: a graph with a -> b -> c -> a has a cycle."""
  fake = grimp.ImportGraph()
  for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a")):
    fake.add_import(importer=a, imported=b)
  assert {c[0] for c in cycles(fake)} == {"p.a", "p.b", "p.c"}


def test_training_code_does_not_import_the_commands(graph):
  assert not graph.chain_exists(importer="primer_mtf.training",
                                imported="primer_mtf.commands", as_packages=True)
