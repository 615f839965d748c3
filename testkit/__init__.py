"""Support shared by ``tests/`` and ``benchmarks/``, never imported by the product packages and not installed.

``testkit.oracles`` loads the reference implementations (the official ``encodec`` package and Hugging Face
``transformers``) that tests check us against and benchmarks time us against; ``testkit.net`` holds network helpers.
"""
