"""`python -m trainers.serve`: it serves a trained run over HTTP on the loopback interface and
answers as `trainers.infer` does (slow); a host beyond loopback needs a token; placements and
run directories are checked with messages that name the fix."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from model_zoo.errors import ConfigError, MissingFileError
from tests.trainers.test_cli import quick_flags, run_cli
from trainers import infer, serve
from trainers.serving import runs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_host_beyond_loopback_needs_a_token():
  serve.check_host("127.0.0.1", None, "PODZOO_SERVE_TOKEN")
  serve.check_host("0.0.0.0", "s3cret", "PODZOO_SERVE_TOKEN")
  with pytest.raises(ConfigError, match="set the environment variable PODZOO_SERVE_TOKEN"):
    serve.check_host("0.0.0.0", None, "PODZOO_SERVE_TOKEN")


def test_placement_text_names_groups_and_models():
  placement = runs.parse_placement("1x2:a,b 2x1:a", ["a", "b"])
  assert str(placement) == "1x2[a,b] 2x1[a]" and placement.devices == 4
  with pytest.raises(ConfigError, match=r"'2:a' is not STAGESxTENSOR"):
    runs.parse_placement("2:a", ["a"])
  with pytest.raises(ConfigError, match=r"names models \['c'\]; serving \['a'\]"):
    runs.parse_placement("1x1:c", ["a"])


def test_a_directory_that_holds_no_run_is_named(tmp_path):
  with pytest.raises(MissingFileError, match=r"serve.models\['a'\] = .* holds no config.gin"):
    runs.load("a", str(tmp_path))


def test_help_names_the_served_models(capfd):
  assert serve.main(["--help"]) == 0
  assert "SERVED_MODELS" in capfd.readouterr().out


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, placement",
    # On this machine, tensor-sharded; and as a Ray Serve deployment, in two pipeline stages.
    [("local", "1x2:lm"), ("ray", "2x1:lm")],
)
def test_the_server_answers_as_infer_does_and_stops_gracefully(tmp_path, capfd, backend, placement):
  run_dir = tmp_path / "run"
  code, out = run_cli(capfd, *quick_flags(run_dir, 2))
  assert code == 0, out
  prompts = ["The quick brown", "Once upon a time"]
  (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
  code = infer.main(
      quick_flags(run_dir, 2)
      + [
          "--gin_file=gin/runs/infer.gin",
          f"--gin.infer.input_file='{tmp_path / 'prompts.txt'}'",
          f"--gin.infer.output_dir='{tmp_path / 'out'}'",
      ]
  )
  assert code == 0, capfd.readouterr()
  written = [json.loads(line) for line in open(tmp_path / "out" / "predict-2.jsonl")]

  port = free_port()
  server = subprocess.Popen(
      [
          sys.executable,
          "-m",
          "trainers.serve",
          "--gin_file=gin/runs/serve.gin",
          f"--gin.SERVED_MODELS={{'lm': '{run_dir}'}}",
          f"--gin.serve.port={port}",
          f"--gin.serve.placement='{placement}'",
          f"--gin.serve.backend='{backend}'",
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
  )
  try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
      try:
        if httpx.get(f"{url}/healthz").status_code == 200:
          break
      except httpx.TransportError:
        time.sleep(0.5)
    else:
      pytest.fail("the server did not come up in 2 minutes")
    response = httpx.post(
        f"{url}/v1/generate", json={"model": "lm", "prompts": prompts}, timeout=120
    )
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [o["output"] for o in outputs] == [r["output"] for r in written]
    assert [o["score"] for o in outputs] == pytest.approx([r["score"] for r in written], abs=1e-3)
  finally:
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=120)
  assert server.returncode == -signal.SIGTERM, out  # uvicorn ends by the signal, after answering
  assert "every accepted request was answered" in out
