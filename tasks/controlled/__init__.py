"""Controlled decoding's data side (Mudgal et al., "Controlled Decoding from Language Models").

A prefix scorer learns the expected reward of a base LM's continuation from rollouts: text
the frozen LM sampled (`python -m trainers.infer`), scored by a reward (`rewards`), written
as a rollout file (`python -m tools.score_rollouts`) and read as a SeqIO task (`rollouts`)
whose batches the `prefix_scorer` feature converter lays out (`feature_converter`).
"""
