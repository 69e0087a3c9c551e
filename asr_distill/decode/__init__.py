"""Decoding with HCLG (Kaldi's LatticeFasterDecoder) and scoring (WER, frame accuracy)."""
