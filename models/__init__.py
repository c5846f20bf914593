"""The Tempo-6B model: video sampling, preprocessing, compressor, token allocation and the answering LLM."""
