"""The repository's own docs stand alone, and name only paths that exist; the license is set.

- Every repository path written in backticks (inline code or fenced blocks) in
  ARCHITECTURE.md and README.md exists: a token counts as a path when it starts with one of
  the top-level packages or folders (model_zoo/, trainers/, tasks/, tools/, gin/, tests/)
  and holds nothing but path characters, so placeholders (`asr_lm_<lang>`), wildcards and
  prose are left alone.
- No file of the repository points readers outside it (a design page in a folder next to
  the checkout, a path above it).
- setup.py declares the Apache-2.0 license that LICENSE holds, and the tensorboard extra.
"""

import pathlib
import re
import runpy
import shutil
import subprocess

import pytest
import setuptools

ROOT = pathlib.Path(__file__).resolve().parents[1]
THIS_FILE = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()
DOCS = ("ARCHITECTURE.md", "README.md")
TOP_LEVEL = ("model_zoo", "trainers", "tasks", "tools", "gin", "tests")

# A repository path: a top-level folder, then only path characters (no spaces, wildcards,
# placeholders such as <lang> or {r,s}, no variables, no "..").
_PATH = re.compile(r"(?:%s)/[A-Za-z0-9_.\-/]*" % "|".join(map(re.escape, TOP_LEVEL)))
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
_EDGE_PUNCTUATION = "()[]{},;:'\"."

# References to things outside the repository. Each is split in two so that this file
# does not match itself when it is read as source.
OUTSIDE_REFERENCES = (
    "shared/" + "DESIGN.md",
    "DESIGN.md" + " of the shared",
    "../" + "shared",
    "shared " + "project folder",
    "/work/" + "shared",
)

APACHE_SECTIONS = (
    "1. Definitions.",
    "2. Grant of Copyright License.",
    "3. Grant of Patent License.",
    "4. Redistribution.",
    "5. Submission of Contributions.",
    "6. Trademarks.",
    "7. Disclaimer of Warranty.",
    "8. Limitation of Liability.",
    "9. Accepting Warranty or Additional Liability.",
)


# --- (a) paths named in the docs exist ----------------------------------------------------
def code_spans(markdown: str) -> list[str]:
  """The contents of every fenced code block and every inline code span of `markdown`."""
  spans, prose, fence, block = [], [], None, []
  for line in markdown.splitlines():
    opened = _FENCE.match(line)
    if fence is None and opened:
      fence = opened.group(1)
    elif fence is not None and line.strip().startswith(fence[0] * len(fence)):
      spans.append("\n".join(block))
      fence, block = None, []
    elif fence is not None:
      block.append(line)
    else:
      prose.append(line)
  if fence is not None:  # an unclosed fence runs to the end, as in CommonMark
    spans.append("\n".join(block))
  spans += [m.group(2) for m in _INLINE_CODE.finditer("\n".join(prose))]
  return spans


def repo_paths(markdown: str) -> list[str]:
  """The repository paths written in code in `markdown`, in order, without repeats.

  A code span is split into words, and a word into the parts around "=" (so that
  `--gin_file=gin/runs/eval.gin` names gin/runs/eval.gin); quotes and punctuation at either
  end are dropped. A part is a path only if all of it matches `_PATH`.
  """
  found = []
  for span in code_spans(markdown):
    for word in span.split():
      for part in word.split("="):
        token = part.strip(_EDGE_PUNCTUATION)
        if _PATH.fullmatch(token) and ".." not in token and token not in found:
          found.append(token)
  return found


def test_path_extraction():
  sample = "\n".join(
      [
          "Models live in `model_zoo/models.py` and `trainers/` (see `tests/`).",
          "Placeholders are not paths: `tasks/asr_lm/<lang>.txt`, `gin/models/*.gin`,",
          "`MODEL_DIR/inference/<mode>-<step>.jsonl`, `tasks/{a,b}/`, `$PODZOO_CACHE/x`;",
          "nor are module names (`tasks.pipeline`) or other folders (`/tmp/tasks/x.py`).",
          "A command in inline code: `python -m trainers.eval --gin_file=gin/runs/eval.gin`.",
          "```bash",
          "python -m trainers.train --gin_file='gin/runs/quickstart.gin' \\",
          "  --gin.MODEL_DIR=\"'/tmp/x'\"  # `not/a/span` inside a fence is plain code",
          "```",
          "Outside code, paths are prose: `tools/` holds (tools/prepare_data.py, tests/tiny.py).",
          "```",
          "tasks/            families (tasks/ul2/, tasks/mt/) and ../escape/tasks/x",
          "```",
      ]
  )
  assert repo_paths(sample) == [
      "gin/runs/quickstart.gin",
      "tasks/",
      "tasks/ul2/",
      "tasks/mt/",
      "model_zoo/models.py",
      "trainers/",
      "tests/",
      "gin/runs/eval.gin",
      "tools/",
  ]


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_doc_names_exists(doc):
  paths = repo_paths((ROOT / doc).read_text(encoding="utf-8"))
  # The docs name many files; finding few means the extraction broke, not that all is well.
  assert len(paths) >= 10, f"{doc}: only {paths} found in code spans"
  missing = [
      p for p in paths if not (ROOT / p).exists() or (p.endswith("/") and not (ROOT / p).is_dir())
  ]
  assert missing == [], f"{doc} names paths that do not exist in the repository: {missing}"


# --- (b) the docs stand alone ----------------------------------------------------------------
def _normalized(text: str) -> str:
  """Lower case, Markdown code and emphasis marks dropped, every run of white space one
  space, so a phrase matches however the text wraps or formats it."""
  return " ".join(re.sub(r"[`*]", "", text).split()).lower()


def outside_references(text: str) -> list[str]:
  """The references of OUTSIDE_REFERENCES that `text` makes."""
  normalized = _normalized(text)
  return [ref for ref in OUTSIDE_REFERENCES if _normalized(ref) in normalized]


def test_outside_reference_detection():
  design, folder = "DESIGN" + ".md", "shared " + "project folder"
  assert outside_references(f"The architecture is described in `{design}` of the\n{folder}.")
  assert outside_references(f"see `{'../' + 'shared'}/notes`")
  assert outside_references(f"read /work/{'shared'}/{design}")
  assert outside_references("The architecture is described in `ARCHITECTURE.md`.") == []
  assert outside_references("a shared cache; sharded arrays; ../tasks") == []


def _repository_files() -> list[str]:
  """Tracked files plus new ones not yet added (but not ignored), from git; outside a git
  checkout (an unpacked release), every file but hidden, cache and build folders."""
  if shutil.which("git") is None or not (ROOT / ".git").exists():
    skipped = {"__pycache__", "build", "dist"}
    return sorted(
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.is_file()
        and not any(
            part.startswith(".") or part in skipped or part.endswith(".egg-info")
            for part in path.relative_to(ROOT).parts
        )
    )
  out = subprocess.run(
      ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
      cwd=ROOT,
      capture_output=True,
      check=True,
  ).stdout
  return sorted({name for name in out.decode("utf-8").split("\0") if name})


def test_no_file_points_outside_the_repository():
  files = _repository_files()
  assert "README.md" in files and "setup.py" in files  # git listed the checkout
  offenders = []
  for name in files:
    path = ROOT / name
    if name == THIS_FILE or not path.is_file():  # the checker itself; deleted, not staged
      continue
    data = path.read_bytes()
    if b"\0" in data[:8192]:  # binary
      continue
    found = outside_references(data.decode("utf-8", errors="replace"))
    offenders += [f"{name}: {ref!r}" for ref in found]
  assert offenders == [], (
      "The repository's files must stand alone (ARCHITECTURE.md describes the design); "
      f"these point outside it: {offenders}"
  )


# --- (c) license ---------------------------------------------------------------------------
@pytest.fixture(name="setup_kwargs")
def fixture_setup_kwargs(monkeypatch):
  """The keyword arguments setup.py passes to setuptools.setup (nothing is built)."""
  captured = {}
  monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
  monkeypatch.chdir(ROOT)
  runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
  assert captured, "setup.py did not call setuptools.setup"
  return captured


def test_setup_declares_apache_2(setup_kwargs):
  assert setup_kwargs.get("license") == "Apache-2.0"
  if "license_expression" in setup_kwargs:
    assert setup_kwargs["license_expression"] == "Apache-2.0"
  licenses = [c for c in setup_kwargs.get("classifiers", ()) if c.startswith("License ::")]
  assert licenses in ([], ["License :: OSI Approved :: Apache Software License"])


def test_tensorboard_extra(setup_kwargs):
  extras = setup_kwargs["extras_require"]
  names = [re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower() for req in extras["tensorboard"]]
  assert names == ["tensorboard"]
  core = [
      re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower()
      for req in setup_kwargs["install_requires"]
  ]
  assert "tensorboard" not in core  # the viewer is optional; runs write with tensorboardX


def test_license_file_is_apache_2():
  text = (ROOT / "LICENSE").read_text(encoding="utf-8")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  assert text.lstrip().startswith("Apache License")
  assert lines[:3] == [
      "Apache License",
      "Version 2.0, January 2004",
      "http://www.apache.org/licenses/",
  ]
  assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in lines
  missing = [s for s in APACHE_SECTIONS if not any(line.startswith(s) for line in lines)]
  assert missing == [], f"LICENSE lacks the sections {missing}"
  positions = [
      next(i for i, line in enumerate(lines) if line.startswith(s)) for s in APACHE_SECTIONS
  ]
  assert positions == sorted(positions), "sections 1-9 out of order"
  assert "END OF TERMS AND CONDITIONS" in lines
  assert "http://www.apache.org/licenses/LICENSE-2.0" in lines
  assert "Copyright 2026 The podzoo Authors" in lines
  assert "[yyyy]" not in text
