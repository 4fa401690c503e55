"""Pre-training tasks over the multilingual catalog text: a causal LM and UL2's denoisers."""
