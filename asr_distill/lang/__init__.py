"""Language side: lexicon, lang dirs, n-gram language models."""
