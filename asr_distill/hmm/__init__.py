"""GMM-HMM training: features, monophone and triphone models, alignment, decision trees."""
