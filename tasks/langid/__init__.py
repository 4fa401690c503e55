"""Language identification over the parallel corpus, and the filters that use it to clean text.

Importing this package imports nothing heavy; `tasks.langid.tasks` registers the SeqIO task.
"""
