import json

from PIL import Image

from tools import build_spae_images


def test_builds_tiny_summarises_it_and_draws_a_grid(tmp_path, capsys):
  out, grid = tmp_path / "summary.json", tmp_path / "grid.png"
  args = ["--config", "tiny", "--data_dir", str(tmp_path / "tfds"), "--json_out", str(out)]
  assert build_spae_images.main([*args, "--grid", str(grid)]) == 0
  printed = capsys.readouterr().out
  assert "split       examples classes min/class max/class  langs" in printed
  assert "\ntrain             52      14         3         4  de,en,es,fr\n" in printed
  summary = json.loads(out.read_text())
  assert summary["config"] == "tiny" and summary["bytes"] > 0 and summary["grid"] == str(grid)
  assert summary["tfds_name"].startswith("podzoo_spae_images/tiny_")
  for split, held_out in (("train", 0), ("validation", 1), ("test", 1)):
    row = summary["splits"][split]
    # 2 images of each digit in en and de; each of 4 words 3 times in train, 2 held out
    assert row == {
        "examples": 40 + 4 * (3 - held_out),
        "classes": 14,
        "per_class_min": 3 - held_out,
        "per_class_max": 4,
        "languages": {"de": 20 + 3 - held_out, "en": 20 + 3 - held_out, "es": 3 - held_out,
                      "fr": 3 - held_out},
    }  # fmt: skip
  width, height = Image.open(grid).size
  assert width >= 800 and height >= 800
  built = sorted(p.stat().st_mtime_ns for p in (tmp_path / "tfds").rglob("*.tfrecord*"))
  assert build_spae_images.main(args) == 0  # again: reused, not rebuilt
  assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "tfds").rglob("*.tfrecord*")) == built


def test_unknown_config_is_refused(capsys):
  assert build_spae_images.main(["--config", "huge"]) == 1
  assert "no SPAE image data config 'huge'" in capsys.readouterr().err
