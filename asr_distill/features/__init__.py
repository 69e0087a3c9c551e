"""Acoustic features (Kaldi-compatible fbank / MFCC, CMVN) and the DNN frame store."""
