"""The docs' commands are real: every ``primer-mtf SUBCOMMAND --flag`` written in
README.md, CONTRIBUTING.md or docs/*.md names a subcommand of the real parser and
only flags it has; every ``launch/*.sh`` command only flags its script takes;
every relative link points to a file (and heading) that exists; the README stays
short.

Fast tier: the parser is built from ``primer_mtf/cli.py`` loaded on its own, which
imports nothing but the standard library, so no TensorFlow is imported here.
"""
import functools
import glob
import importlib.util
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 300

# Inputs that the bad-input table (docs/reliability.md) shows being refused: they
# are wrong on purpose. Each must still be in that table (checked below), so this
# list cannot outlive it.
DELIBERATELY_BAD = {
    ("trian", None),        # an unknown subcommand
    ("train", "--steps"),   # an unknown flag
}


def doc_files():
  return ([os.path.join(REPO, "README.md"), os.path.join(REPO, "CONTRIBUTING.md")]
          + sorted(glob.glob(os.path.join(REPO, "docs", "*.md"))))


@functools.lru_cache(maxsize=None)
def cli_parser():
  """The real ``primer-mtf`` parser, from cli.py alone (the package's __init__
  would load the stack)."""
  spec = importlib.util.spec_from_file_location(
      "_primer_mtf_cli_for_docs", os.path.join(REPO, "primer_mtf", "cli.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.parser()


def subcommand_flags(parser):
  """{subcommand: its long option strings}."""
  sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")  # pylint: disable=protected-access
  return {name: {s for s in p._option_string_actions if s.startswith("--")}  # pylint: disable=protected-access
          for name, p in sub.choices.items()}


# --- extraction -----------------------------------------------------------------

def snippets(text):
  """The code of a markdown text: each code block's logical lines (a line ending
  in a backslash, or one that continues a synopsis with ``[`` or ``--``, joins
  the line before), then each inline code span outside the blocks."""
  out, prose, block, fenced = [], [], [], False

  def flush():
    logical = []
    for line in block:
      stripped = line.strip()
      if logical and (logical[-1].endswith("\\") or stripped.startswith(("[", "--"))):
        logical[-1] = logical[-1].rstrip("\\").rstrip() + " " + stripped
      elif stripped:
        logical.append(stripped)
    out.extend(logical)
    block.clear()

  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      if fenced:
        flush()
      fenced = not fenced
      continue
    indented = line.startswith("    ") and not re.match(r"\s*([-*]\s|\|)", line)
    if fenced or (indented and (block or not prose or not prose[-1].strip()
                                or prose[-1].rstrip().endswith(":"))):
      block.append(line)
      continue
    if block:
      flush()
    prose.append(line)
  flush()
  out.extend(re.findall(r"`([^`\n]+)`", "\n".join(prose)))
  return out


def _unquoted(text):
  """``text`` with its quoted strings emptied (a flag-like word inside a
  --gin_param value is not a flag), cut at the end of the shell command."""
  text = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)
  return re.split(r"&&|\|\||[;|>]|\s#\s", text)[0]


def _commands(snippet, start):
  """Each command in ``snippet`` beginning with the regex ``start``: the text
  from it to the end of its shell command. A command that starts inside a quoted
  string (``--command 'cd x && bash launch/...'``) ends where the string does."""
  found = []
  for m in re.finditer(start, snippet):
    before = snippet[:m.start()]
    rest = snippet[m.start():]
    for quote in ("'", '"'):
      if before.count(quote) % 2:
        rest = rest.split(quote, 1)[0]
    found.append(_unquoted(rest))
  return found


FLAG = re.compile(r"(?<![\w=-])--[A-Za-z][\w-]*")
CLI_START = r"(?<![\w.-])(?:primer-mtf|-m primer_mtf)(?=\s)"


def cli_commands(snippet):
  """(subcommand, [flags]) of each ``primer-mtf`` command in a snippet; a
  subcommand in capitals (``primer-mtf COMMAND --help``) is a placeholder, None."""
  out = []
  for command in _commands(snippet, CLI_START):
    words = command.split()
    words = words[2:] if words[0] == "-m" else words[1:]
    if not words or not re.fullmatch(r"[a-z][a-z_]*|[A-Z_]+", words[0]):
      continue   # bare mention, or prose ("primer-mtf: error: ...")
    name = None if words[0].isupper() else words[0]
    out.append((name, FLAG.findall(" ".join(words[1:]))))
  return out


LAUNCH_START = r"(?<![\w/.-])launch/(?:recipes/)?[a-z0-9_]+\.sh(?![\w*{])"


def launch_commands(snippet):
  """(script, [flags]) of each ``launch/*.sh`` command in a snippet."""
  out = []
  for command in _commands(snippet, LAUNCH_START):
    script, *words = command.split()
    out.append((script, FLAG.findall(" ".join(words))))
  return out


def problems_in(text, flags_of):
  """What is wrong with the ``primer-mtf`` commands of a markdown text."""
  problems = []
  for snippet in snippets(text):
    for name, flags in cli_commands(snippet):
      if name is None:
        continue
      if name not in flags_of:
        if (name, None) not in DELIBERATELY_BAD:
          problems.append(f"unknown subcommand {name!r} in: {snippet}")
        continue
      for flag in flags:
        if flag not in flags_of[name] and (name, flag) not in DELIBERATELY_BAD:
          problems.append(f"primer-mtf {name} has no flag {flag} (in: {snippet})")
  return problems


# --- the docs' own commands -------------------------------------------------------

def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_primer_mtf_command_is_a_real_subcommand_with_real_flags(path):
  assert not problems_in(_read(path), subcommand_flags(cli_parser()))


def test_the_docs_show_commands_at_all():
  """The extraction finds what it should, so the test above is not vacuous."""
  found = [c for p in doc_files() for s in snippets(_read(p)) for c in cli_commands(s)]
  names = {name for name, _ in found}
  assert {"train", "eval", "compare", "finetune", "sample", "score", "plan",
          "cache", "bench", "vocab"} <= names, names
  assert sum(len(flags) for _, flags in found) > 100


def test_the_deliberately_bad_inputs_are_still_in_the_bad_input_table():
  table = _read(os.path.join(REPO, "docs", "reliability.md"))
  assert "`primer-mtf trian`" in table
  assert "`primer-mtf train --model_dir NEW --steps 5`" in table


def test_the_readme_test_command_is_the_one_ci_runs():
  ci = _read(os.path.join(REPO, ".ci", "run"))
  command = "bash launch/install.sh && .venv/bin/python -m pytest -q tests"
  assert command in ci
  assert "\n    " + command + "\n" in _read(os.path.join(REPO, "README.md"))


def test_readme_is_short():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    assert len(f.read().splitlines()) <= README_MAX_LINES


# --- links ------------------------------------------------------------------------

def slug(heading):
  """GitHub's anchor of a heading."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def anchors(path):
  return {slug(m) for m in re.findall(r"^#+\s+(.*)$", _read(path), re.M)}


def broken_links(path, text=None):
  """Relative links of a markdown file whose file, or heading, does not exist."""
  text = _read(path) if text is None else text
  broken = []
  for target in re.findall(r"\]\(([^)\s]+)\)", text):
    if re.match(r"[a-z]+:", target):
      continue   # https:, mailto:
    file_part, _, anchor = target.partition("#")
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
        if file_part else path
    if not os.path.exists(resolved):
      broken.append(target)
    elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
      broken.append(target)
  return broken


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_points_to_what_exists(path):
  assert not broken_links(path)


# --- launch scripts ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def script_flags(script):
  """The flags a launch script takes, from its own refusal of an unknown one
  (launch/common.sh's parse_flags stops before anything runs)."""
  command = {"launch/tpu.sh": ["train"], "launch/gpu.sh": ["train"]}.get(script, [])
  result = subprocess.run(["bash", script, *command, "--not_a_flag_docs_probe", "x"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
  m = re.search(r"unknown flag --not_a_flag_docs_probe; it takes (.*)", result.stderr)
  assert m, f"{script} did not list its flags: {result.stderr!r}"
  return set(m.group(1).split())


def test_every_launch_command_takes_the_flags_it_is_shown_with():
  problems, seen = [], 0
  for path in doc_files():
    for snippet in snippets(_read(path)):
      for script, flags in launch_commands(snippet):
        if not os.path.exists(os.path.join(REPO, script)):
          problems.append(f"{script} does not exist ({path})")
          continue
        seen += 1
        problems += [f"{script} takes no {flag} (in: {snippet})"
                     for flag in flags if flag not in script_flags(script)]
  assert seen > 5 and not problems, problems


# --- the checks themselves can fail -----------------------------------------------

SYNTHETIC = """\
Train it:

    .venv/bin/primer-mtf train --model_dir runs/x --model primer_ez \\
        --not_a_real_flag 3 --gin_param "utils.run.sequence_length = '--notaflag'"
    primer-mtf eval  --model_dir DIR [--split validation] [--mesh NAME]
                     [--follow [--poll_seconds 30] [--timeout_seconds 3600]]

Then `primer-mtf evaluate --model_dir x`, `primer-mtf COMMAND --help`, and
`python -m primer_mtf sample --model_dir x --prompt hi --top_p 0.9`.
"""


def test_a_fake_flag_a_fake_subcommand_and_nothing_else_are_caught():
  problems = problems_in(SYNTHETIC, subcommand_flags(cli_parser()))
  assert len(problems) == 3, problems
  assert "primer-mtf train has no flag --not_a_real_flag" in problems[0]
  assert "unknown subcommand 'evaluate'" in problems[1]
  assert "primer-mtf sample has no flag --top_p" in problems[2]


def test_extraction_joins_continued_lines_and_ignores_quoted_values():
  commands = [c for s in snippets(SYNTHETIC) for c in cli_commands(s)]
  assert commands[0] == ("train", ["--model_dir", "--model", "--not_a_real_flag",
                                   "--gin_param"])
  assert commands[1] == ("eval", ["--model_dir", "--split", "--mesh", "--follow",
                                  "--poll_seconds", "--timeout_seconds"])
  assert (None, ["--help"]) in commands


def test_a_launch_command_inside_a_quoted_remote_command_ends_with_it():
  line = ("gcloud compute tpus tpu-vm ssh x --command 'cd p && bash "
          "launch/install.sh --tensorflow system' --project my-project")
  assert launch_commands(line) == [("launch/install.sh", ["--tensorflow"])]


def test_a_broken_link_and_a_missing_heading_are_caught():
  path = os.path.join(REPO, "README.md")
  text = ("[ok](docs/training.md) [gone](docs/no_such_page.md) "
          "[bad anchor](docs/training.md#no-such-heading) [web](https://example.com)")
  assert broken_links(path, text) == ["docs/no_such_page.md",
                                      "docs/training.md#no-such-heading"]
