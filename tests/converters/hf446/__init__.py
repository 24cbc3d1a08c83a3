"""Scripts run by the transformers 4.46 virtualenv (CKCONV_HF446_PYTHON), never imported by
the test process itself: they make the TF models and the 4.46 oracles."""
