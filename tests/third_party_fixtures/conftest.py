"""The fixture modules import their framework at import time: keep doctest collection out of them."""

collect_ignore_glob = ["*_impls.py"]
