"""asr-distill: knowledge distillation for hybrid DNN-HMM speech recognisers.

Reproduces and extends the speech experiments of Hinton, Vinyals & Dean (2015),
"Distilling the Knowledge in a Neural Network". See ``README.md``.
"""

__version__ = "0.1.0"
