"""Stylus (Luo et al. 2024): adapters chosen and composed for a prompt. A refiner describes
and embeds each catalog adapter, a retriever finds the adapters near a prompt, a composer
keeps those that fit each of the prompt's keywords, and masked merging combines them."""
