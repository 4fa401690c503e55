"""Speech recognition data: espeak-ng speech of the ASR LM text as SeqIO tasks."""
