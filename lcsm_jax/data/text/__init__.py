"""Text data for language modelling: tfds builders (array_record), grain pipelines, tokenizers."""
