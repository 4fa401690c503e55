"""Load generator: replays a request trace against a running `python -m trainers.serve`.

  python -m tools.serve_load --url http://127.0.0.1:8000 --models a,b --rate 4 --cv 3 \
      --duration 30 [--kind score] [--trace trace.jsonl] [--json_out serve_load.json] \
      [--answers_out answers.jsonl]

Each model gets Gamma arrivals (--rate requests/s, --cv; trainers/serving/workload.py), or
--trace replays a recorded one ({"time", "model"} a line). Every request is sent at its time
(not after the previous answer), so bursts reach the server as bursts. Prints a table and
writes JSON: requests sent, answered by status (200 served; 429 queues full; 503 not in its
SLO), lost (no HTTP answer: a crash or a timeout), throughput and the latency p50/p99 of the
served ones, in all and by model. The token, if the server needs one, is read from the
environment variable --token_env names.
"""

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import os
import socket
import sys
import threading
import time
from typing import Any, Iterator, Optional, Sequence

import httpx

from model_zoo.errors import UserError
from tools import benchmark_common
from trainers.infer_outputs import write_jsonl
from trainers.serving import workload

PROMPTS = ("The quick brown", "Once upon a time", "In the beginning", "Hello")


@dataclasses.dataclass(frozen=True)
class Answer:
  model: str
  sent_s: float  # since the replay started
  status: Optional[int]  # None: lost (no HTTP answer)
  latency_s: float
  error: Optional[str] = None  # why it was lost (the client's exception type)


@contextlib.contextmanager
def local_server(app) -> Iterator[str]:
  """Runs the ASGI `app` on uvicorn, in a thread of this process, on a free port of the
  loopback interface; yields its URL, and stops it on exit."""
  import uvicorn  # pylint: disable=g-import-not-at-top  (the [serve] extra)

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  try:
    while not server.started:
      if not thread.is_alive():
        raise RuntimeError(f"the server did not start on port {port}")
      time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
  finally:
    server.should_exit = True
    thread.join(60)


def body(kind: str, model: str, i: int) -> dict[str, Any]:
  prompt = PROMPTS[i % len(PROMPTS)]
  if kind == "score":
    return {"model": model, "prompts": [prompt], "targets": [" and more"]}
  return {"model": model, "prompts": [prompt]}


async def replay(
    url: str,
    trace: workload.Trace,
    kind: str = "generate",
    token: Optional[str] = None,
    timeout_s: float = 120.0,
) -> list[Answer]:
  """Sends each request of `trace` at its time; every request's answer (or its loss)."""
  headers = {"Authorization": f"Bearer {token}"} if token else {}
  # A connection per request: a kept-alive one that the server closes (idle) just as the
  # client reuses it loses that request, a client artefact that would count as a loss.
  limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
  async with httpx.AsyncClient(
      base_url=url, headers=headers, timeout=timeout_s, limits=limits
  ) as c:
    start = time.perf_counter()

    async def one(i: int, at: float, model: str) -> Answer:
      await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
      sent = time.perf_counter()
      try:
        response = await c.post(f"/v1/{kind}", json=body(kind, model, i))
      except httpx.HTTPError as e:
        return Answer(model, sent - start, None, time.perf_counter() - sent, type(e).__name__)
      return Answer(model, sent - start, response.status_code, time.perf_counter() - sent)

    names = trace.model_names
    return list(
        await asyncio.gather(
            *(one(i, float(t), names[m]) for i, (t, m) in enumerate(zip(trace.times, trace.models)))
        )
    )


def summarize(answers: Sequence[Answer]) -> dict[str, Any]:
  """Counts by status, lost requests, throughput and served latency percentiles (all, by model)."""

  def of(group: Sequence[Answer]) -> dict[str, Any]:
    served = [a.latency_s for a in group if a.status == 200]
    span = max((a.sent_s + a.latency_s for a in group), default=0.0)
    return {
        "sent": len(group),
        "status": dict(collections.Counter(a.status for a in group if a.status is not None)),
        "lost": sum(a.status is None for a in group),
        "lost_by": dict(collections.Counter(a.error for a in group if a.status is None)),
        "served_per_s": len(served) / span if span else 0.0,
        "p50_s": benchmark_common.percentile(served, 50) if served else None,
        "p99_s": benchmark_common.percentile(served, 99) if served else None,
    }

  models = sorted({a.model for a in answers})
  return {
      "all": of(answers),
      "models": {m: of([a for a in answers if a.model == m]) for m in models},
  }


def format_table(summary: dict[str, Any]) -> str:
  lines = ["model | sent | 200 | 429 | 503 | lost | served/s | p50 (s) | p99 (s)"]
  rows = [("all", summary["all"])] + sorted(summary["models"].items())
  for name, s in rows:
    status = s["status"]
    p50 = "-" if s["p50_s"] is None else f"{s['p50_s']:.3f}"
    p99 = "-" if s["p99_s"] is None else f"{s['p99_s']:.3f}"
    lines.append(
        f"{name} | {s['sent']} | {status.get(200, 0)} | {status.get(429, 0)} | "
        f"{status.get(503, 0)} | {s['lost']} | {s['served_per_s']:.2f} | {p50} | {p99}"
    )
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.serve_load", description=__doc__)
  parser.add_argument("--url", default="http://127.0.0.1:8000")
  parser.add_argument("--models", default="", help="comma-separated, for Gamma arrivals")
  parser.add_argument("--rate", type=float, default=2.0, help="requests/s per model")
  parser.add_argument("--cv", type=float, default=1.0)
  parser.add_argument("--duration", type=float, default=30.0, help="seconds")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--trace", default=None, help="a recorded trace (JSON Lines)")
  parser.add_argument("--kind", choices=("generate", "score"), default="generate")
  parser.add_argument("--token_env", default="PODZOO_SERVE_TOKEN")
  parser.add_argument("--json_out", default="serve_load.json")
  parser.add_argument("--answers_out", default=None, help="every answer, a JSON line each")
  args = parser.parse_args(argv)
  if not (args.trace or args.models):
    parser.error("give --models (Gamma arrivals) or --trace")
  try:
    if args.trace:
      trace = workload.load(args.trace)
    else:
      process = workload.GammaProcess(args.rate, args.cv)
      models = args.models.split(",")
      trace = workload.gamma_trace({m: process for m in models}, args.duration, args.seed)
  except UserError as e:
    parser.error(str(e))
  answers = asyncio.run(replay(args.url, trace, args.kind, os.environ.get(args.token_env)))
  summary = summarize(answers)
  if args.answers_out:
    write_jsonl(os.path.abspath(args.answers_out), map(dataclasses.asdict, answers))
  benchmark_common.emit({"settings": vars(args), **summary}, format_table(summary), args.json_out)
  return 1 if summary["all"]["lost"] else 0


if __name__ == "__main__":
  sys.exit(main())
