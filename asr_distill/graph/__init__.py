"""Decoding graphs: HCLG from a lang dir with G.fst and a GMM-HMM (Kaldi's mkgraph.sh),
with kaldifst and kaldi-hmm-gmm, and the FST operations kaldifst lacks."""

from asr_distill.graph.mkgraph import GraphConfig, GraphSummary, StageInfo, make_graph

__all__ = ["GraphConfig", "GraphSummary", "StageInfo", "make_graph"]
