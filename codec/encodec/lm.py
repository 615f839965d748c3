"""The entropy-coding language model: predicts each codebook's next code from the previous frame.

The paper's LM (Défossez et al. 2022, arXiv:2210.13438, section 3.3); how the coder uses its probabilities:
``docs/ecdc-format.md`` section 5.

Arithmetic coding is only decodable when the decoder sees bit-for-bit the float32 probabilities the encoder saw, so
every operation mirrors the reference's order on CPU (sin embedding, attention through ``scaled_dot_product_attention``
with the same float mask, post-norm layers, exact-erf GELU, softmax over a permuted tensor).

The streaming state is where we differ. The reference keeps each layer's past *inputs* and re-projects the whole
3.5 s window to keys and values at every step. We keep the projected keys and values and project only the new
frame. A matrix product's rows are not bit-identical across all matrix heights, though: on MKL, products with fewer
than 16 rows use other kernels than taller ones. So the first steps of a stream (window shorter than ``stable_rows``)
are projected exactly as the reference does, and later frames are projected inside a ``stable_rows``-high product
(the new frame plus its predecessors). ``stable_rows`` is measured once per process on the machine
(``gemm_stable_rows``); when no height gives identical rows the LM falls back to re-projecting the whole window.
``tests/encodec/test_lm.py`` checks the probabilities against the reference for equality. The coder itself runs the
LM through ``lm_layerwise``, which evaluates it layer by layer over many frames with these same bits.

The bits also depend on the thread count: kernels split their work by it, and whether the layer-wise evaluation
gives the frame-by-frame bits (``layerwise_exact``, ``gemm_stable_rows``) is measured per thread count. On this
project's machines it does at one thread and not at two, so an encoder at one thread and a decoder at two took
different paths to different bits, and the file failed to decode. The coder therefore evaluates the LM inside
``lm_threads()``, always at ``LM_THREADS`` threads, whatever the process's setting.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from codec.encodec.checkpoints import OFFICIAL_LM_FILES, find_official_checkpoint, official_search_dirs
from codec.encodec.config import EncodecConfig
from codec.files import replacing

_STABLE_ROWS_CANDIDATES = (16, 32, 64)
_stable_rows_found: dict[tuple, Optional[int]] = {}
#: torch threads the LM is evaluated with when coding: one, the count every machine has and the one the reference's
#: bytes are checked at. It costs no speed: the LM is memory-bound frame by frame, and at two threads the layer-wise
#: evaluation was not exact, so coding fell back to frame by frame (4 s of speech with the shipped LM at 6 kbps, on
#: 2 busy cores: encoding 11 s at two threads, 2.7 s at one; decoding 30-50 s, 4-5 s).
LM_THREADS = 1


@contextmanager
def lm_threads() -> Iterator[None]:
    """Run the block at ``LM_THREADS`` torch threads, then restore the caller's count: probabilities computed inside
    are the same bits whatever thread count the process runs with (``OMP_NUM_THREADS``, ``torch.set_num_threads``),
    so encoder and decoder agree. The setting is process-wide: other threads' torch work runs at it meanwhile."""
    before = torch.get_num_threads()
    if before != LM_THREADS:
        torch.set_num_threads(LM_THREADS)
    try:
        yield
    finally:
        if before != LM_THREADS:
            torch.set_num_threads(before)


class LMWeightsError(ValueError):
    """LM weights that are missing, unreadable or do not fit the model."""


class KVCache:
    """Keys and values of one layer's window in preallocated buffers [capacity, B, dim], appended in place.

    The window is always a contiguous slice, laid out like the reference's freshly projected keys, and growing it
    costs no copy of the window except when the buffer end is reached (once per ``capacity - past_context`` frames).
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, past_context: int) -> None:
        self.past_context = past_context
        window = min(keys.shape[0], past_context)
        self.keys = keys.new_empty(2 * past_context + 1, *keys.shape[1:])
        self.values = torch.empty_like(self.keys)
        self.keys[:window] = keys[-window:]
        self.values[:window] = values[-window:]
        self.end = window

    def append(self, keys: torch.Tensor, values: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Add [T, B, dim] keys and values; returns the last ``rows`` of each (the attention window)."""
        count = keys.shape[0]
        if self.end + count > self.keys.shape[0]:
            kept = min(self.end, self.past_context)
            capacity = max(self.keys.shape[0], kept + count + self.past_context)
            grown_keys = self.keys.new_empty(capacity, *self.keys.shape[1:])
            grown_values = self.values.new_empty(grown_keys.shape)
            grown_keys[:kept] = self.keys[self.end - kept:self.end]
            grown_values[:kept] = self.values[self.end - kept:self.end]
            self.keys, self.values, self.end = grown_keys, grown_values, kept
        self.keys[self.end:self.end + count] = keys
        self.values[self.end:self.end + count] = values
        self.end += count
        return self.keys[self.end - rows:self.end], self.values[self.end - rows:self.end]


@dataclass
class LMState:
    """What a streaming LM remembers between calls. A call consumes the state it is given (caches grow in place)."""

    inputs: list[torch.Tensor]  # per layer, its latest inputs [B, n, dim] (the whole window without a kv cache)
    kv: list[Optional[KVCache]]  # per layer, keys and values of the window, once cached
    length: int  # H, frames in the attention window (the reference's state length)
    offset: Union[int, torch.Tensor]  # time index of the next frame, for the positional embedding ([B] in training)


def sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
    """Cosines then sines of ``positions / max_period ** (i / (dim/2 - 1))`` (note the -1), float32 like the
    reference."""
    half = dim // 2
    index = torch.arange(half, device=positions.device).view(1, 1, -1)
    phase = positions / (max_period ** (index / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def _project_last(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, count: int) -> torch.Tensor:
    """Project the last ``count`` rows of ``window`` [B, S, dim] inside one product over all of it ->
    [count, B, out]."""
    return F.linear(window.transpose(1, 0), weight, bias)[-count:]


def stable_heights(rows: int, total: int) -> list[int]:
    """The product heights ``gemm_stable_rows`` checks for a candidate ``rows`` (ascending): a product of one of
    these heights may project frames for the kv cache."""
    return sorted({h for h in (rows, rows + 1, rows + 2, rows + 3, 2 * rows - 1, 2 * rows, 2 * rows + 1, 3 * rows + 5,
                               100, 127, 128, 129, 200, 255, 256, 257, total - 1, total) if rows <= h <= total})


def gemm_stable_rows(weight: torch.Tensor, bias: torch.Tensor, past_context: int) -> Optional[int]:
    """The smallest product height from which projected rows no longer depend on the height, on this machine.

    Checks, for random inputs, that every row of products of many heights >= the candidate equals the same row of the
    full-window product, and that projecting each row at the end of a candidate-high window gives it too.
    """
    key = (tuple(weight.shape), weight.dtype, weight.device.type, torch.get_num_threads(), past_context)
    if key in _stable_rows_found:
        return _stable_rows_found[key]
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(1, past_context + 1, weight.shape[1], generator=generator).to(weight.device, weight.dtype)
    total = past_context + 1
    full = _project_last(x, weight, bias, total)
    found = None
    for rows in _STABLE_ROWS_CANDIDATES:
        if rows > total:
            break
        heights = stable_heights(rows, total)
        same_heights = all(torch.equal(_project_last(x[:, :h].clone(), weight, bias, h), full[:h]) for h in heights)
        if same_heights and all(torch.equal(_project_last(x[:, i + 1 - rows:i + 1].clone(), weight, bias, 1),
                                            full[i:i + 1]) for i in range(rows - 1, total)):
            found = rows
            break
    _stable_rows_found[key] = found
    return found


class StreamingLayer(nn.Module):
    """A post-norm transformer layer attending to a window of past frames (the reference's custom layer)."""

    def __init__(self, dim: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        # nn.MultiheadAttention only holds the parameters, under the official names; the forward is ours.
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def kv_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        dim = self.norm1.normalized_shape[0]
        return self.self_attn.in_proj_weight[dim:], self.self_attn.in_proj_bias[dim:]

    def forward(self, x: torch.Tensor, inputs: torch.Tensor, cache: Optional[KVCache], length: int,
                past_context: int, stable_rows: Optional[int]) -> tuple[torch.Tensor, torch.Tensor, Optional[KVCache]]:
        """``x`` [B, T, dim] -> output, the inputs to keep, the key/value cache (None until cacheable)."""
        T, dim = x.shape[1], x.shape[2]
        w_kv, b_kv = self.kv_projection()
        rows = length + T
        if stable_rows is None or cache is None:  # the reference's way: ``inputs`` hold the whole window
            kv = _project_last(torch.cat([inputs, x], dim=1), w_kv, b_kv, rows)
            keys, values = kv[..., :dim].contiguous(), kv[..., dim:].contiguous()
            if stable_rows is not None and rows >= stable_rows:
                cache = KVCache(keys, values, past_context)
        else:
            window = torch.cat([inputs[:, -(stable_rows - 1):], x], dim=1)
            kv = _project_last(window, w_kv, b_kv, T)
            keys, values = cache.append(kv[..., :dim], kv[..., dim:], rows)
        q = F.linear(x.transpose(1, 0), self.self_attn.in_proj_weight[:dim], self.self_attn.in_proj_bias[:dim])
        out = self.norm1(x + self._attend(q, keys, values, past_context))
        out = self.norm2(out + self.linear2(F.gelu(self.linear1(out))))
        keep = past_context if stable_rows is None else stable_rows - 1
        return out, torch.cat([inputs, x], dim=1)[:, -keep:], cache

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_context: int) -> torch.Tensor:
        """Attention of queries [T, B, dim] on keys and values [S, B, dim], in F.multi_head_attention_forward's
        steps."""
        tgt_len, bsz, dim = q.shape
        src_len = k.shape[0]
        heads = self.self_attn.num_heads
        head_dim = dim // heads
        if tgt_len == 1:  # one query sees the whole window: the reference's mask is all zeros
            mask = q.new_zeros(1, 1, 1, src_len)
        else:
            q_pos = torch.arange(src_len - tgt_len, src_len, device=q.device).view(-1, 1)
            k_pos = torch.arange(src_len, device=q.device).view(1, -1)
            delta = q_pos - k_pos
            allowed = (delta >= 0) & (delta <= past_context)
            mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
            mask = mask.view(1, 1, tgt_len, src_len)
        q = q.view(tgt_len, bsz * heads, head_dim).transpose(0, 1).view(bsz, heads, tgt_len, head_dim)
        k = k.view(src_len, bsz * heads, head_dim).transpose(0, 1).view(bsz, heads, src_len, head_dim)
        v = v.view(src_len, bsz * heads, head_dim).transpose(0, 1).view(bsz, heads, src_len, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, mask, 0.0, False)
        out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, dim)
        out = F.linear(out, self.self_attn.out_proj.weight, self.self_attn.out_proj.bias)
        return out.view(tgt_len, bsz, dim).transpose(1, 0)


class StreamingTransformer(nn.Module):
    """Input LayerNorm, sinusoidal positions with a running offset, and the streaming layers."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, hidden: int, past_context: int,
                 max_period: float = 10000) -> None:
        super().__init__()
        self.past_context = past_context
        self.max_period = max_period
        self.norm_in = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(StreamingLayer(dim, num_heads, hidden) for _ in range(num_layers))

    def initial_state(self, batch: int, device: torch.device, offset: Union[int, torch.Tensor] = 0) -> LMState:
        """The reference starts every layer with one zero input: a real key (projected to the bias) until it leaves.

        ``offset`` is the position of the first frame: 0 at inference, one per sequence ([B] int64) in training.
        """
        zero = torch.zeros(batch, 1, self.norm_in.normalized_shape[0], device=device)
        return LMState([zero] * len(self.layers), [None] * len(self.layers), 1, offset)

    def forward(self, x: torch.Tensor, state: LMState, stable_rows: Optional[int]) -> tuple[torch.Tensor, LMState]:
        _, T, C = x.shape
        offset = state.offset.view(-1, 1, 1) if isinstance(state.offset, torch.Tensor) else state.offset
        positions = torch.arange(T, device=x.device).view(1, -1, 1) + offset
        x = self.norm_in(x) + sin_embedding(positions, C, self.max_period)
        inputs, kvs = [], []
        for layer, layer_inputs, kv in zip(self.layers, state.inputs, state.kv):
            x, layer_inputs, kv = layer(x, layer_inputs, kv, state.length, self.past_context, stable_rows)
            inputs.append(layer_inputs)
            kvs.append(kv)
        return x, LMState(inputs, kvs, min(state.length + T, self.past_context), state.offset + T)


class EntropyLM(nn.Module):
    """LMModel of the official package: sum of per-codebook embeddings of the previous frame -> per-codebook softmax.

    Inputs are ``1 + code`` of the previous frame, 0 meaning "no previous frame".
    """

    def __init__(self, n_q: int, card: int = 1024, dim: int = 200, num_layers: int = 5, num_heads: int = 8,
                 hidden_scale: int = 4, past_context: int = 262, kv_cache: bool = True) -> None:
        super().__init__()
        self.n_q, self.card, self.dim = n_q, card, dim
        self.num_layers, self.num_heads, self.hidden_scale = num_layers, num_heads, hidden_scale
        self.kv_cache = kv_cache  # False re-projects the whole window at every step, exactly as the reference
        self.transformer = StreamingTransformer(dim, num_heads, num_layers, dim * hidden_scale, past_context)
        self.emb = nn.ModuleList(nn.Embedding(card + 1, dim) for _ in range(n_q))
        self.linears = nn.ModuleList(nn.Linear(dim, card) for _ in range(n_q))

    @classmethod
    def for_codec(cls, config: EncodecConfig) -> "EntropyLM":
        """The LM the official package pairs with a codec: all its codebooks, a 3.5 s causal window."""
        return cls(config.n_q, config.bins, past_context=int(3.5 * config.frame_rate))

    @property
    def past_context(self) -> int:
        return self.transformer.past_context

    def lm_config(self) -> dict[str, int]:
        """The hyper-parameters that rebuild this LM (``EntropyLM(**lm.lm_config())``)."""
        return {"n_q": self.n_q, "card": self.card, "dim": self.dim, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "hidden_scale": self.hidden_scale, "past_context": self.past_context}

    def initial_state(self, batch: int = 1, offset: Union[int, torch.Tensor] = 0) -> LMState:
        return self.transformer.initial_state(batch, self.emb[0].weight.device, offset)

    def stable_rows(self) -> Optional[int]:
        """Height of the products that project new frames for the kv cache; None without a cache."""
        if not self.kv_cache:
            return None
        weight, bias = self.transformer.layers[0].kv_projection()
        return gemm_stable_rows(weight.detach(), bias.detach(), self.transformer.past_context)

    def logits(self, indices: torch.Tensor, state: Optional[LMState] = None) -> tuple[torch.Tensor, LMState]:
        """Logits [B, card, K, T] of frames t given frames < t, for ``indices`` [B, K, T] (1 + previous codes).

        Differentiable: training calls it on whole sequences, inference (``forward``) on one frame at a time.
        """
        B, K, T = indices.shape
        if not 1 <= K <= self.n_q:
            raise ValueError(f"the LM holds {self.n_q} codebooks, asked for {K}")
        state = self.initial_state(B) if state is None else state
        x = sum([self.emb[k](indices[:, k]) for k in range(K)])
        out, state = self.transformer(x, state, self.stable_rows())
        return torch.stack([self.linears[k](out) for k in range(K)], dim=1).permute(0, 3, 1, 2), state

    @torch.no_grad()
    def forward(self, indices: torch.Tensor, state: Optional[LMState] = None) -> tuple[torch.Tensor, LMState]:
        """Probabilities [B, card, K, T] (the softmax of ``logits``, as the reference computes them)."""
        logits, state = self.logits(indices, state)
        return torch.softmax(logits, dim=1), state


LM_FORMAT = "encodec-eval-lm/1"
_LM_CONFIG_KEYS = ("n_q", "card", "dim", "num_layers", "num_heads", "hidden_scale", "past_context")


def save_lm(lm: EntropyLM, path: Union[str, Path], dtype: torch.dtype = torch.float16,
            metadata: Optional[dict[str, Any]] = None) -> Path:
    """Save an LM with its hyper-parameters in the project format (``LM_FORMAT``), atomically.

    float16 halves the file (inference casts back to float32 on load, so encoder and decoder see the same weights).
    """
    path = Path(path)
    state = {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu())
             for k, v in lm.state_dict().items()}
    payload = {"format": LM_FORMAT, "lm_config": lm.lm_config(), "state_dict": state,
               "metadata": dict(metadata or {})}
    with replacing(path) as part:
        torch.save(payload, part)
    return path


def load_lm(path: Union[str, Path], config: EncodecConfig, device: Union[str, torch.device] = "cpu") -> EntropyLM:
    """Load an LM for the codec described by ``config``, strictly: an official checkpoint (a plain state dict, the
    official architecture for that codec) or a file of ``save_lm`` (its own hyper-parameters, at least
    ``config.n_q`` codebooks of ``config.bins`` entries; float16 weights become float32)."""
    path = Path(path)
    if not path.is_file():
        raise LMWeightsError(f"{path}: no such LM checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise LMWeightsError(f"{path}: cannot read the LM checkpoint ({exc})") from exc
    if isinstance(state, dict) and "format" in state:
        lm, state = _project_lm(path, state, config)
    else:
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        lm = EntropyLM.for_codec(config)
    if not isinstance(state, dict):
        raise LMWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LMWeightsError(f"{path}: the state dict holds values that are not tensors")
    try:
        lm.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise LMWeightsError(f"{path}: the weights do not fit the LM of {config.name}: {exc}") from exc
    return lm.to(device).eval()


def _project_lm(path: Path, payload: dict, config: EncodecConfig) -> tuple[EntropyLM, Any]:
    """The empty LM a ``save_lm`` file describes, checked against the codec, and the file's state dict."""
    if payload["format"] != LM_FORMAT:
        raise LMWeightsError(f"{path}: unknown LM file format {payload['format']!r}; expected {LM_FORMAT!r}")
    lm_config = payload.get("lm_config")
    if not isinstance(lm_config, dict) or set(lm_config) != set(_LM_CONFIG_KEYS):
        raise LMWeightsError(f"{path}: lm_config must hold exactly {', '.join(_LM_CONFIG_KEYS)}, got {lm_config!r}")
    bad = [k for k, v in lm_config.items() if not (isinstance(v, int) and not isinstance(v, bool) and v > 0)]
    if bad:
        raise LMWeightsError(f"{path}: lm_config values must be positive integers; bad: {', '.join(bad)}")
    if lm_config["n_q"] < config.n_q or lm_config["card"] != config.bins:
        raise LMWeightsError(f"{path}: the LM has {lm_config['n_q']} codebooks of {lm_config['card']} entries; "
                             f"{config.name} needs at least {config.n_q} codebooks of {config.bins}")
    if lm_config["dim"] % lm_config["num_heads"] or lm_config["dim"] % 2:
        raise LMWeightsError(f"{path}: dim {lm_config['dim']} must be even and divisible by "
                             f"num_heads {lm_config['num_heads']}")
    return EntropyLM(**lm_config), payload.get("state_dict")


def find_official_lm(config: EncodecConfig) -> Path:
    """Where the official LM for ``config``'s codec is on this machine; LMWeightsError if it is not there."""
    filename = OFFICIAL_LM_FILES.get(config.name)
    if filename is None:
        raise LMWeightsError(f"no official LM exists for {config.name}; known: {', '.join(OFFICIAL_LM_FILES)}")
    path = find_official_checkpoint(filename)
    if path is None:
        raise LMWeightsError(f"the official LM {filename} is not on this machine; looked in "
                             f"{', '.join(map(str, official_search_dirs()))}. Copy it there (or set ENCODEC_WEIGHTS), "
                             "or pass the path of an LM checkpoint")
    return path
