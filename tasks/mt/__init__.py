"""Machine translation over the parallel catalog corpus: translation, MASS and back-translation.

Import `tasks.mt.tasks` to register `mt_<src>_<tgt>` (English <-> every other corpus language),
`mass_<lang>` (every language), the temperature-sampled `mt_multilingual` mixture and the gin
configurable `mt_mixture` (the languages over a message-count threshold).
"""
