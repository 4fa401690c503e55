"""UL2 (mixture of denoisers) over the King James Genesis: vocabulary, denoisers, tasks.

Import `tasks.ul2.tasks` to register the tasks and the `ul2_kjv` mixture.
"""
