"""Machine translation over the parallel catalog corpus: translation, MASS and back-translation.

Import `tasks.mt.tasks` to register `mt_<src>_<tgt>` (English <-> 19 languages), `mass_<lang>`
(20 languages) and the temperature-sampled `mt_multilingual` mixture.
"""
