"""ASR LM text: per-language spoken-form text as SeqIO LM tasks, for shallow fusion."""
