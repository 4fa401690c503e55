"""Serving many models on shared devices with model-parallel placement (AlpaServe).

profiles.py (the numbers the planning reads) <- profiler.py (measured through staged.py, a
model in pipeline stages on tensor-sharded sub-meshes); workload.py (Gamma and recorded
traces) -> simulator.py (the serving policy, replayed) -> placement.py (the search); the
server: replica.py (a model on a group; staged_decoding.py generates through its stages) ->
engine.py (queues, batching, SLOs; stats.py counts the answers) -> http_app.py (the HTTP
API), with runs.py loading finished runs for trainers/serve.py; ray_groups.py runs the
groups as Ray Serve deployments beyond one machine.
"""
