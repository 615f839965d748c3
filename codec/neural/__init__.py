"""The neural codecs researchers compare EnCodec with, behind the one codec interface: DAC (16, 24, 44.1 kHz), SNAC
(24 kHz), Mimi and Vocos decoding EnCodec's tokens.

Each wraps one well-kept implementation (``transformers`` for DAC and Mimi, the authors' ``snac`` and ``vocos``
packages otherwise), installed as optional extras. Weights come from a local folder or the Hugging Face cache
(``hub.py``), or a download the user asks for; nothing is fetched otherwise. The bitstream is the codes themselves,
packed at log2(codebook size) bits each (``token_codec.py``), so the measured bitrate is codebooks x bits x frame
rate. ``catalogue.py`` lists them for the command line, the summary and the README.
"""
