"""Flan-style instruction tuning: templated zero-shot, few-shot and chain-of-thought prompts.

Instruction tasks over real data (translation, language ID and country codes from the
parallel corpus; generated arithmetic word problems), each in several phrasings and
formats, mixed examples-proportionally with a cap. Import `tasks.flan.tasks` to register
the tasks and the `flan_podzoo` mixture.
"""
