"""Models built from the layers: the language model used for MQAR and language modeling."""
