"""Hybrid DNN acoustic models: the spliced-window ReLU MLP and its trainer."""
