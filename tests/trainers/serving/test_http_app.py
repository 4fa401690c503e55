"""The serving HTTP API over real tiny models on 8 fake CPU devices: concurrent requests get
what offline decoding and scoring give, and every mistake or overload gets its documented
status, as JSON, without internals."""

import json
import threading
import time

import jax
import pytest

from model_zoo.decoding.sampling import greedy
from tests.trainers.serving.tiny_served import (
    VOCAB,
    assert_concurrent_answers_are_offline_ones,
    offline_generate,
    request,
    served,
)
from trainers.serving import engine as engine_lib
from trainers.serving.http_app import create_app
from trainers.serving.profiles import ConfigProfile, ModelProfile, ParallelConfig
from trainers.serving.simulator import Group, Placement

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def models_ab():
  return [served("a", 0), served("b", 1)]


# "a" on a tensor-sharded one-stage group and in two pipeline stages; "b" beside it.
PLACEMENT = Placement(
    (Group(ParallelConfig(1, 2), ("a", "b")), Group(ParallelConfig(2, 1), ("a",)))
)


@pytest.fixture
def engine(models_ab):
  engine = engine_lib.Engine(models_ab, PLACEMENT, jax.devices(), max_batch=4, max_queue=8)
  yield engine
  engine.close()


def test_concurrent_requests_get_what_offline_decoding_and_scoring_give(engine, models_ab):
  prompts = assert_concurrent_answers_are_offline_ones(create_app(engine), models_ab)
  assert engine.metrics()["requests"][("a", "score", "ok")] == len(prompts)


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"prompts": ["x"]}, 400, "needs 'model'"),
        ({"model": "a", "prompts": "x"}, 400, "'prompts' must be a list of strings"),
        ({"model": "a", "prompts": [3]}, 400, "'prompts' must be a list of strings"),
        ({"model": "a", "prompts": []}, 400, "1 to 4 items"),
        ({"model": "a", "prompts": ["y" * 40]}, 400, "has 40 tokens; model 'a' takes at most 23"),
        ({"model": "a", "prompts": ["x"], "max_decode_length": 0}, 400, "max_decode_length"),
        ({"model": "a", "prompts": ["x"], "decoder": {"top_p": 2}}, 400, "top_p"),
        ({"model": "a", "prompts": ["x"], "decoder": {"beam": 4}}, 400, "unknown ['beam']"),
        ({"model": "zz", "prompts": ["x"]}, 404, "serves ['a', 'b']"),
    ],
)
def test_bad_generate_requests_get_their_status_naming_the_field(engine, body, status, words):
  response = request(create_app(engine), "POST", "/v1/generate", json=body)
  assert response.status_code == status
  assert words in response.json()["error"]["message"]


def test_bodies_that_are_not_json_or_too_large_are_refused(engine):
  app = create_app(engine, max_body_bytes=100)
  response = request(app, "POST", "/v1/score", content=b"{not json")
  assert response.status_code == 400 and "JSON object" in response.json()["error"]["message"]
  big = json.dumps({"model": "a", "prompts": ["x" * 200], "targets": ["y"]})
  assert request(app, "POST", "/v1/score", content=big).status_code == 413
  response = request(app, "GET", "/v2/nothing")
  assert response.status_code == 404 and response.json()["error"]["type"] == "HTTPError"


def test_a_token_is_needed_everywhere_but_health_and_compared_whole(engine):
  app = create_app(engine, token=TOKEN)
  body = {"model": "a", "prompts": ["x"], "targets": ["y"]}
  assert request(app, "GET", "/healthz").json() == {"status": "ok"}
  for headers in ({}, {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": TOKEN}):
    assert request(app, "POST", "/v1/score", json=body, headers=headers).status_code == 401
    assert request(app, "GET", "/metrics", headers=headers).status_code == 401
  ok = request(app, "POST", "/v1/score", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
  assert ok.status_code == 200 and len(ok.json()["scores"]) == 1


def hold_workers(engine, monkeypatch) -> tuple[threading.Event, list[int]]:
  """Each group's replica of "b" waits for the returned event before scoring (its worker
  busy with that batch); the list records which group served each batch."""
  go, served_by = threading.Event(), []
  for group in engine.groups:
    replica = group.replicas["b"]

    def held(rows, i=group.index, score=replica.score):
      served_by.append(i)
      go.wait(60)
      return score(rows)

    monkeypatch.setattr(replica, "score", held)
  return go, served_by


def submit_taken(engine, group: int):
  """A score request for "b", once a worker has taken it off group `group`'s queue."""
  future = engine.score("b", ["x"], ["y"])
  while engine.groups[group].queue:
    time.sleep(0.01)
  return future


def test_full_queues_answer_429_with_retry_after(models_ab, monkeypatch):
  engine = engine_lib.Engine(
      models_ab[1:], Placement((Group(ParallelConfig(1, 1), ("b",)),)), jax.devices(), max_queue=1
  )
  go, _ = hold_workers(engine, monkeypatch)
  try:
    futures = [submit_taken(engine, 0), engine.score("b", ["x"], ["y"])]  # busy, then queued
    response = request(
        create_app(engine),
        "POST",
        "/v1/score",
        json={"model": "b", "prompts": ["x"], "targets": ["y"]},
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
  finally:
    go.set()
  assert all(len(f.result(60)) == 1 for f in futures)
  engine.close()


def test_a_request_that_would_miss_its_slo_is_dropped_with_503(models_ab):
  late = served("late", 0, slo_s=0.5)
  one = ParallelConfig(1, 1)
  # The profile says a batch takes 2 s here: no request can make a 0.5 s SLO.
  profile = ModelProfile("late", {one: ConfigProfile(one, {1: (2.0,)}, 1)})
  engine = engine_lib.Engine(
      [late], Placement((Group(one, ("late",)),)), jax.devices(), profiles={"late": profile}
  )
  response = request(
      create_app(engine), "POST", "/v1/generate", json={"model": "late", "prompts": ["x"]}
  )
  assert response.status_code == 503 and "SLO of 0.5 s" in response.json()["error"]["message"]
  assert "retry-after" in response.headers
  assert engine.metrics()["requests"][("late", "generate", "dropped")] == 1
  engine.close()


def test_a_bug_answers_500_without_its_details(engine, monkeypatch):
  def broken(rows):
    raise RuntimeError("secret internals at /srv/x.py")

  for group in engine.groups:
    monkeypatch.setattr(group.replicas["a"], "score", broken)
  response = request(
      create_app(engine),
      "POST",
      "/v1/score",
      json={"model": "a", "prompts": ["x"], "targets": ["y"]},
  )
  assert response.status_code == 500 and "secret" not in response.text
  # The server keeps serving.
  ok = request(create_app(engine), "POST", "/v1/generate", json={"model": "b", "prompts": ["x"]})
  assert ok.status_code == 200


def test_closing_answers_every_accepted_request_then_refuses_new_ones(engine):
  futures = [engine.score("a", ["abc"], ["d"]) for _ in range(6)]
  futures += [engine.generate("b", ["abc"], greedy()) for _ in range(3)]
  engine.close()
  assert all(len(f.result(0)) == 1 for f in futures)
  response = request(
      create_app(engine), "POST", "/v1/generate", json={"model": "b", "prompts": ["x"]}
  )
  assert response.status_code == 503 and "shutting down" in response.json()["error"]["message"]
  assert request(create_app(engine), "GET", "/healthz").json() == {"status": "shutting down"}


def test_metrics_count_requests_by_outcome(engine):
  app = create_app(engine)
  request(app, "POST", "/v1/score", json={"model": "a", "prompts": ["x"], "targets": ["y"]})
  text = request(app, "GET", "/metrics").text
  assert 'podzoo_requests_total{model="a",kind="score",outcome="ok"} 1' in text
  assert 'podzoo_queue_length{group="1"} 0' in text
  assert 'podzoo_request_latency_seconds{model="a",quantile="0.99"}' in text


def test_a_model_placed_only_in_pipeline_stages_generates_what_offline_decoding_gives(
    models_ab,
):
  engine = engine_lib.Engine(
      models_ab[:1], Placement((Group(ParallelConfig(2, 1), ("a",)),)), jax.devices()
  )
  prompts = ["hello", "zoo pod", ""]
  response = request(
      create_app(engine), "POST", "/v1/generate", json={"model": "a", "prompts": prompts}
  )
  engine.close()
  texts, scores = offline_generate(models_ab[0], prompts)
  outputs = response.json()["outputs"]
  assert [o["output"] for o in outputs] == texts
  assert [o["score"] for o in outputs] == pytest.approx(scores.tolist(), abs=1e-4)


def test_warm_up_compiles_greedy_generation_on_every_group(models_ab):
  placement = Placement((Group(ParallelConfig(1, 1), ("a",)), Group(ParallelConfig(2, 1), ("a",))))
  engine = engine_lib.Engine(models_ab[:1], placement, jax.devices(), max_batch=1)
  engine.warm_up()
  one_stage, two_stages = engine.groups[0].replicas["a"], engine.groups[1].replicas["a"]
  assert list(one_stage._generate) == [greedy()]  # pylint: disable=protected-access
  assert list(two_stages._generate) == [greedy()]  # pylint: disable=protected-access
  engine.close()


def test_max_decode_length_cuts_each_output(engine):
  app = create_app(engine)
  full = request(app, "POST", "/v1/generate", json={"model": "b", "prompts": ["hello"]})
  cut = request(
      app, "POST", "/v1/generate", json={"model": "b", "prompts": ["hello"], "max_decode_length": 2}
  )
  full, cut = full.json()["outputs"][0]["output"], cut.json()["outputs"][0]["output"]
  assert len(VOCAB.encode(full)) > 2 and full.startswith(cut) and len(VOCAB.encode(cut)) <= 2


def test_a_request_goes_to_the_group_with_the_shortest_queue(models_ab, monkeypatch):
  one = ParallelConfig(1, 1)
  engine = engine_lib.Engine(
      models_ab[1:], Placement((Group(one, ("b",)), Group(one, ("b",)))), jax.devices()
  )
  go, served_by = hold_workers(engine, monkeypatch)
  futures = [submit_taken(engine, 0)]  # queues 0/0: the first group; its worker takes it
  futures.append(engine.score("b", ["x"], ["y"]))  # 0/0 again: queued in the first group
  futures.append(submit_taken(engine, 1))  # 1/0: the second group; its worker takes it
  futures.append(engine.score("b", ["x"], ["y"]))  # 1/0: queued in the second group
  assert [len(g.queue) for g in engine.groups] == [1, 1]
  go.set()
  assert all(len(f.result(60)) == 1 for f in futures)
  assert sorted(served_by) == [0, 0, 1, 1]
  engine.close()
