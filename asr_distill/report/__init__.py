"""Reports: the paper's tables (Markdown, CSV) and plots (PNG) from a recipe's exp dir."""
