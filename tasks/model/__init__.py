"""Model stage: model families, training, evaluation."""
