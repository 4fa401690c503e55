"""The placement's groups as Ray Serve deployments on a local Ray cluster: each group an actor
of its own with its own devices, requests routed to them give what offline decoding and
scoring give, users' errors cross back with their status, and closing deletes the app."""

import jax
import pytest

from tests.trainers.serving.tiny_served import (
    assert_concurrent_answers_are_offline_ones,
    request,
    served,
)
from trainers.serving.http_app import create_app
from trainers.serving.profiles import ParallelConfig
from trainers.serving.simulator import Group, Placement

# Ray starts its processes by fork and exec, which the warning does not tell apart from a fork.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
ray_groups = pytest.importorskip("trainers.serving.ray_groups")

PLACEMENT = Placement(
    (Group(ParallelConfig(1, 2), ("a", "b")), Group(ParallelConfig(2, 1), ("a",)))
)


@pytest.fixture(scope="module")
def models_ab():
  return [served("a", 0), served("b", 1)]


@pytest.fixture(scope="module")
def deployed(models_ab):
  front = ray_groups.deploy(
      {m.name: m for m in models_ab},
      PLACEMENT,
      engine_options={"max_batch": 4, "max_queue": 8},
      warm_up=False,
  )
  assert front.stops_ray  # it started Ray on this machine
  yield front
  front.close()


def test_each_group_runs_in_its_own_actor_on_devices_of_its_own(deployed):
  # A 1x2 and a 2x1 group: each actor sees two CPU devices, not the 8 of this process.
  assert [len(d) for d in deployed.group_devices] == [2, 2]
  assert len(jax.devices()) == 8
  # No HTTP proxy of Ray Serve's: the only way in is the front end's own server.
  assert not serve.status().proxies
  assert deployed.placed() == {
      "a": [{"group": 0, "parallel": "1x2"}, {"group": 1, "parallel": "2x1"}],
      "b": [{"group": 0, "parallel": "1x2"}],
  }


def test_requests_through_the_groups_get_what_offline_decoding_gives(deployed, models_ab):
  app = create_app(deployed)
  prompts = assert_concurrent_answers_are_offline_ones(app, models_ab)
  text = request(app, "GET", "/metrics").text
  assert f'podzoo_requests_total{{model="a",kind="score",outcome="ok"}} {len(prompts)}' in text
  assert 'podzoo_queue_length{group="1"} 0' in text


def test_users_errors_cross_back_from_the_groups_with_their_status(deployed):
  app = create_app(deployed)
  unknown = request(app, "POST", "/v1/generate", json={"model": "zz", "prompts": ["x"]})
  assert unknown.status_code == 404 and "serves ['a', 'b']" in unknown.text
  # Checked inside the group's engine, on the other side of Ray.
  long = request(app, "POST", "/v1/generate", json={"model": "b", "prompts": ["y" * 40]})
  assert long.status_code == 400
  assert "has 40 tokens; model 'b' takes at most 23" in long.json()["error"]["message"]
  text = request(app, "GET", "/metrics").text
  assert 'podzoo_requests_total{model="b",kind="generate",outcome="error"} 1' in text


def test_actor_options_ask_ray_for_the_groups_devices():
  assert ray_groups.actor_options(4, "gpu") == {"num_cpus": 1, "num_gpus": 4}
  assert ray_groups.actor_options(8, "tpu")["resources"] == {"TPU": 8}
  cpu = ray_groups.actor_options(2, "cpu")
  assert cpu["num_cpus"] == 2
  assert "device_count=2" in cpu["runtime_env"]["env_vars"]["XLA_FLAGS"]
  with pytest.raises(ray_groups.ConfigError, match="expected one of"):
    ray_groups.actor_options(1, "npu")


def test_closing_stops_ray_and_refuses_new_requests(deployed):
  # Last in this module: it ends the deployment.
  assert deployed.app_name in serve.status().applications
  deployed.close()
  assert not ray.is_initialized()
  response = request(
      create_app(deployed),
      "POST",
      "/v1/score",
      json={"model": "a", "prompts": ["x"], "targets": ["y"]},
  )
  assert response.status_code == 503 and "shutting down" in response.text


class _PendingGroup:
  """A group handle whose requests wait until released: what the router sees of a group."""

  def __init__(self, name):
    self.name, self.release = name, None
    outer = self

    class _Method:

      async def _wait(self, *args):
        await outer.release.wait()
        return "ok", (outer.name, args)

      def remote(self, *args):
        return self._wait(*args)

    self.request = _Method()


def test_the_router_sends_each_request_to_the_least_loaded_group_holding_its_model():
  import asyncio  # pylint: disable=g-import-not-at-top

  groups = [_PendingGroup(0), _PendingGroup(1)]
  router = ray_groups.Router(groups, [("a", "b"), ("a",)])

  async def send():
    release = asyncio.Event()
    for g in groups:
      g.release = release
    # b can only go to group 0; then a's go to whichever has fewer unanswered.
    calls = [asyncio.ensure_future(router.request("generate", m)) for m in ("b", "a", "a", "a")]
    await asyncio.sleep(0)
    seen = list(router.unanswered)
    release.set()
    return seen, [(await c)[1][0] for c in calls], list(router.unanswered)

  seen, went_to, after = asyncio.run(send())
  assert went_to == [0, 1, 0, 1] and seen == [2, 2] and after == [0, 0]
