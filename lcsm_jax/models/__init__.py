"""Whole models around catalogue mixers: the language model (MQAR, language modelling) and the
sequence classifier (time series), and recurrent sampling."""
