"""Registers every built-in codec. ``codec.base.create`` imports this module on first use; the modules it imports
load their codec libraries (libopus, LAME, codec2, torch weights, transformers) only when a codec is built."""

from codec.baselines import anchors, codec2, mp3, opus, reference  # noqa: F401  (registration side effects)
from codec.encodec import codec as encodec_codec  # noqa: F401
from codec.neural import dac, mimi, snac, vocos  # noqa: F401
