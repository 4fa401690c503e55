"""The HTTP API over the serving engine, as a Starlette (ASGI) app that uvicorn runs.

  GET  /healthz      {"status": "ok"} (no token needed: for load balancers)
  GET  /v1/models    the served models, their row length, SLO and where they are placed
  POST /v1/generate  {"model", "prompts": [text], "max_decode_length"?, "decoder"?:
                      {"temperature", "top_k", "top_p"} (default greedy)}
                     -> {"model", "outputs": [{"output", "score"}]} (each output at most
                     max_decode_length tokens; the model decodes up to its row length and
                     the score is of the whole decode)
  POST /v1/score     {"model", "prompts": [text], "targets": [text]}
                     -> {"model", "scores": [log p(target | prompt)]}
  GET  /metrics      Prometheus text: requests by model, kind and outcome; queue lengths;
                     latency p50/p99 by model
Every error is JSON {"error": {"type", "message"}} with its status (400 bad field, 401 token,
404 unknown model or path, 413 body too large, 429 queues full and 503 not served in time or
shutting down, both with Retry-After); a bug answers 500 without its details (the server's
log has them). With a token, every path but /healthz needs `Authorization: Bearer <token>`.
"""

import asyncio
import concurrent.futures
import hmac
import inspect
import json
import logging
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol, Sequence, Union

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from model_zoo.decoding.sampling import Sampling
from model_zoo.errors import ConfigError
from trainers.serving.errors import BadRequest, ServingError, TooLarge, Unauthorized

MAX_BODY_BYTES = 1 << 20
OPEN_PATHS = ("/healthz",)

Pending = Union[concurrent.futures.Future, Awaitable]


class Frontend(Protocol):
  """What the app serves: the Engine on this machine, or ray_groups.RayEngine over groups
  served as Ray Serve deployments. generate and score check what they can at once (raising
  a ServingError) and return the pending answer."""

  closing: bool
  models: Mapping[str, Any]  # name -> .name, .max_length, .slo_s

  def placed(self) -> dict[str, list[dict]]:
    ...

  def generate(
      self, name: str, prompts: Sequence[str], decoder: Sampling, max_decode_length: Optional[int]
  ) -> Pending:
    ...

  def score(self, name: str, prompts: Sequence[str], targets: Sequence[str]) -> Pending:
    ...

  def metrics(self) -> Union[dict[str, Any], Awaitable[dict[str, Any]]]:
    ...


async def _answer(pending: Any) -> Any:
  """The value of a future, an awaitable or a plain value."""
  if isinstance(pending, concurrent.futures.Future):
    pending = asyncio.wrap_future(pending)
  return await pending if inspect.isawaitable(pending) else pending


def _error(kind: str, message: str, status: int, retry_after_s: Optional[float] = None):
  headers = {"Retry-After": f"{max(1, round(retry_after_s))}"} if retry_after_s else None
  return JSONResponse({"error": {"type": kind, "message": message}}, status, headers=headers)


async def _serving_error(request: Request, e: ServingError):
  del request
  return _error(type(e).__name__, str(e), e.status, e.retry_after_s)


async def _http_error(request: Request, e: HTTPException):
  del request
  return _error("HTTPError", e.detail, e.status_code)


async def _internal_error(request: Request, e: Exception):
  logging.error("%s %s failed", request.method, request.url.path, exc_info=e)
  return _error("InternalError", "internal error; the server's log has the details", 500)


def _field(body: dict, name: str, kind: type, default: Any = ..., what: str = "") -> Any:
  if name not in body:
    if default is ...:
      raise BadRequest(f"the request needs '{name}' ({what or kind.__name__})")
    return default
  value = body[name]
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
    raise BadRequest(f"'{name}' must be {what or kind.__name__}; got {type(value).__name__}")
  return value


def _texts(body: dict, name: str) -> list[str]:
  texts = _field(body, name, list, what="a list of strings")
  if not all(isinstance(t, str) for t in texts):
    raise BadRequest(f"'{name}' must be a list of strings")
  return texts


def _decoder(body: dict) -> Sampling:
  options = _field(body, "decoder", dict, {}, "an object")
  unknown = sorted(set(options) - {"temperature", "top_k", "top_p"})
  if unknown:
    raise BadRequest(f"'decoder' takes temperature, top_k and top_p; unknown {unknown}")
  try:
    return Sampling(
        temperature=_field(options, "temperature", float, 0.0),
        top_k=_field(options, "top_k", int, 0),
        top_p=_field(options, "top_p", float, 1.0),
    )
  except ConfigError as e:
    raise BadRequest(f"'decoder': {e}") from e


def create_app(
    engine: Frontend,
    token: Optional[str] = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    lifespan: Optional[Callable] = None,
):
  """The Starlette app over `engine`; with `token`, requests must carry it (Bearer).
  `lifespan`: Starlette's, e.g. to close the engine when the server stops."""
  expected = f"Bearer {token}".encode() if token else None

  def authorize(request: Request) -> None:
    if expected is None:
      return
    given = request.headers.get("authorization", "").encode()
    if not hmac.compare_digest(given, expected):
      raise Unauthorized("a valid 'Authorization: Bearer <token>' header is needed")

  async def read_json(request: Request) -> dict:
    authorize(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
      raise TooLarge(f"the body is over {max_body_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
      body += chunk
      if len(body) > max_body_bytes:
        raise TooLarge(f"the body is over {max_body_bytes} bytes")
    try:
      parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise BadRequest(f"the body must be a JSON object: {e}") from e
    if not isinstance(parsed, dict):
      raise BadRequest("the body must be a JSON object")
    return parsed

  async def healthz(request: Request):
    del request
    return JSONResponse({"status": "shutting down" if engine.closing else "ok"})

  async def models(request: Request):
    authorize(request)
    placed = engine.placed()
    return JSONResponse(
        {
            "models": [
                {
                    "name": m.name,
                    "max_length": m.max_length,
                    "slo_s": m.slo_s,
                    "placed": placed[m.name],
                }
                for m in engine.models.values()
            ]
        }
    )

  async def generate(request: Request):
    body = await read_json(request)
    name = _field(body, "model", str)
    pending = engine.generate(
        name,
        _texts(body, "prompts"),
        _decoder(body),
        _field(body, "max_decode_length", int, None),
    )
    return JSONResponse({"model": name, "outputs": await _answer(pending)})

  async def score(request: Request):
    body = await read_json(request)
    name = _field(body, "model", str)
    pending = engine.score(name, _texts(body, "prompts"), _texts(body, "targets"))
    scores = [r["score"] for r in await _answer(pending)]
    return JSONResponse({"model": name, "scores": scores})

  async def metrics(request: Request):
    authorize(request)
    return PlainTextResponse(prometheus_text(await _answer(engine.metrics())))

  return Starlette(
      routes=[
          Route("/healthz", healthz),
          Route("/v1/models", models),
          Route("/v1/generate", generate, methods=["POST"]),
          Route("/v1/score", score, methods=["POST"]),
          Route("/metrics", metrics),
      ],
      exception_handlers={
          ServingError: _serving_error,
          HTTPException: _http_error,
          Exception: _internal_error,
      },
      lifespan=lifespan,
  )


def prometheus_text(metrics: dict) -> str:
  """The engine's metrics in Prometheus' text format."""
  lines = ["# TYPE podzoo_requests_total counter"]
  for (model, kind, outcome), n in sorted(metrics["requests"].items()):
    lines.append(f'podzoo_requests_total{{model="{model}",kind="{kind}",outcome="{outcome}"}} {n}')
  lines.append("# TYPE podzoo_queue_length gauge")
  for group, n in enumerate(metrics["queue_length"]):
    lines.append(f'podzoo_queue_length{{group="{group}"}} {n}')
  lines.append("# TYPE podzoo_request_latency_seconds summary")
  for model, quantiles in sorted(metrics["latency_s"].items()):
    for q, seconds in quantiles.items():
      lines.append(
          f'podzoo_request_latency_seconds{{model="{model}",quantile="{q / 100:g}"}} {seconds:.6f}'
      )
  return "\n".join(lines) + "\n"
