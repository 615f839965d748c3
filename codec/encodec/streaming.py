"""Streaming encode and decode for the causal EnCodec model.

Audio goes in as pieces of any size; codes come out as soon as each frame of ``hop_length`` samples is complete,
and the decoder turns codes into audio as soon as they arrive. Both reproduce the one-shot ``EncodecModel`` (the
same codes but for rare near-ties, audio equal up to float rounding) because each layer keeps exactly the state
the one-shot pass would read:

- a causal conv keeps its last ``(kernel - 1) * dilation + 1 - stride`` input samples; its output ``i`` reads input
  up to ``stride * i + stride - 1`` only, so it runs as soon as those samples are there;
- the reference pads every conv on the left with a *reflection* of its first samples, so a conv can start only
  once it holds ``padding_total + 1`` samples. This costs a one-time start-up (6 frames at 24 kHz, caused by the
  k7 convs at frame rate), after which one frame comes out per frame that goes in. A player that starts at the
  first output and never skips stays 7 frames (93.3 ms) behind the input for good; one that drops or shortens
  the start-up burst gets down to one frame (13.3 ms);
- the right alignment padding depends on the total length, so it is applied at ``flush()`` (end of stream), and
  a stream shorter than a conv's padding falls back to the one-shot rule for short inputs;
- a transposed conv overlap-adds the tail of the previous piece; the LSTMs carry (h, c); a residual block adds
  its shortcut to its block branch once the branch (which starts later) has caught up.

Two regimes. Long pushes (``LONG_PUSH_FRAMES`` frames or more: coding files, corpora) run the one-shot model's
own kernels (oneDNN convs and LSTM, the residual sums unfused): away from the edges of the pieces the latents are
the very same floats as ``model.encode``'s (under ``no_grad``), so the codes match even at near-ties.

Short pushes (live streaming: a one-frame push does little arithmetic but reads every weight matrix once, about
60 MB at 24 kHz, so its time is mostly memory traffic; ``benchmarks/streaming.py`` measures that floor) keep
everything else small. Between layers the signal is held time-major, ``[B, T, C]``. A conv is one matrix product
of its windows ``[T_out, kernel * C_in]`` (a strided view of the input) with a weight matrix laid out once per
stream, cheaper than ``F.conv1d`` on such short inputs; a residual block's 1x1 shortcut and last 1x1 conv are one
product of ``[input, hidden]``; a transposed conv is one product plus an overlap-add of ``ceil(kernel / stride)``
blocks. The LSTM takes two ``lstm_cell`` calls per frame (``nn.LSTM`` on CPU goes through oneDNN, which re-lays
out its 16 MB of weights at every call, costing more than the step itself) and, for a few frames in one push,
reads its input weights once for all of them. These products sum in another order than the one-shot kernels (a
relative 1e-7), which can flip a code at a near-tie (see ``benchmarks/streaming.py`` for the count); the quantizer
spells its distances as the one-shot quantizer does.

A stream lays out its conv weights (weight norm applied) and, for the decoder, a stacked copy of the codebooks
when it is created, and shares the LSTM weights and the encoder's codebooks with the model: create streams after
loading weights, and do not train the model while they run.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import audio
from .config import EncodecConfig
from .model import EncodecModel
from .modules.conv import PaddedConv1d, PaddedConvTranspose1d, extra_padding, pad1d
from .modules.seanet import ResidualBlock, SkipLSTM
from .quantization.rvq import nearest_code, squared_norms


def check_streamable(config: EncodecConfig) -> None:
    """Raise ValueError unless ``config`` describes a model that can stream (causal, no segments, no scale)."""
    problems = []
    if not config.causal:
        problems.append("it is not causal (its convs look ahead)")
    if config.segment is not None:
        problems.append(f"it codes {config.segment:g} s segments")
    if config.normalize:
        problems.append("it normalizes each segment by its RMS")
    if config.norm == "time_group_norm":
        problems.append("its time_group_norm normalizes over the whole signal")
    if problems:
        raise ValueError(f"{config.name} cannot stream: " + "; ".join(problems))


def _empty(x: Tensor, channels: int) -> Tensor:
    """No samples: a ``[B, 0, channels]`` time-major piece."""
    return x.new_empty((x.shape[0], 0, channels))


def _cat(head: Optional[Tensor], tail: Optional[Tensor]) -> Optional[Tensor]:
    """Join two time-major pieces along time; None stands for nothing."""
    if head is None or (tail is not None and head.shape[1] == 0):
        return tail
    if tail is None or tail.shape[1] == 0:
        return head
    return torch.cat([head, tail], dim=1)


def _pad_time(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """``pad1d`` along the time axis of a time-major piece (start-up and end of stream only)."""
    return pad1d(x.transpose(1, 2), left, right, mode).transpose(1, 2).contiguous()


LONG_PUSH_FRAMES = 16  # pushes of at least this many frames (213 ms at 24 kHz) run the one-shot model's kernels


class _Stream:
    """One layer's streaming state, on time-major ``[B, T, C]`` pieces. ``step`` takes the next input piece and
    returns every output it completes; ``flush`` ends the stream and returns the rest (None if there is none);
    ``ready(n)`` says how many outputs ``n`` inputs complete before ``flush``.

    ``one_shot_kernels`` (set for long pushes) makes the layer compute as the one-shot model does (oneDNN convs and
    LSTM, unfused sums): away from the edges of the pieces, the very same floats, hence the one-shot codes even at
    near-ties. Otherwise the layer takes the lean path for short pieces.
    """

    one_shot_kernels = False

    def children(self) -> list["_Stream"]:
        return []

    def step(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def flush(self) -> Optional[Tensor]:
        return None

    def ready(self, n_inputs: int) -> int:
        return n_inputs


class _ConvStream(_Stream):
    def __init__(self, layer: PaddedConv1d) -> None:
        if not isinstance(layer.conv.norm, nn.Identity):
            raise ValueError("a conv followed by a norm over time cannot stream")
        if not layer.causal:
            raise ValueError("a non-causal conv cannot stream")
        conv = layer.conv.conv
        if conv.groups != 1:
            raise ValueError("a grouped conv cannot stream")
        self.layer = layer
        weight = conv.effective_weight().detach()  # [C_out, C_in, kernel]
        self.out_channels = weight.shape[0]
        # rows in the order of a time-major window flattened: (tap, input channel)
        self.matrix = weight.permute(2, 1, 0).reshape(-1, self.out_channels).contiguous()
        self.weight = weight
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.stride, self.dilation, self.kernel_size = layer.stride, layer.dilation, layer.kernel_size
        self.padding_total = layer.padding_total
        self.pad_mode = layer.pad_mode
        self.span = (layer.kernel_size - 1) * layer.dilation + 1
        if self.pad_mode == "reflect" and self.padding_total < self.stride - 1:
            # flush() reflects the alignment padding (< stride) from the kept context (padding_total samples)
            raise ValueError(f"a reflect-padded conv with kernel {layer.kernel_size} and stride {layer.stride} "
                             "keeps too little context to stream")
        # samples needed before the left padding can be built: a reflection reads x[1..padding_total]
        self.start_after = self.padding_total if self.pad_mode == "reflect" else 0
        self.buffer: Optional[Tensor] = None
        self.received = 0
        self.started = False

    def ready(self, n_inputs: int) -> int:
        return n_inputs // self.stride if n_inputs > self.start_after else 0

    def _conv(self, x: Tensor, n_out: int) -> Tensor:
        """The first ``n_out`` windows of ``x`` ``[B, T, C_in]`` through the conv, as one matrix product."""
        if self.one_shot_kernels:
            return self._one_shot_conv(x.transpose(1, 2).contiguous()).transpose(1, 2)
        batch, _, channels = x.shape
        if x.stride(2) != 1 or x.stride(1) != channels:
            x = x.contiguous()
        windows = x.as_strided((batch, n_out, self.kernel_size, channels),
                               (x.stride(0), self.stride * channels, self.dilation * channels, 1))
        rows = windows.reshape(batch * n_out, self.matrix.shape[0])  # a view for one batch item, no dilation
        out = torch.mm(rows, self.matrix) if self.bias is None else torch.addmm(self.bias, rows, self.matrix)
        return out.view(batch, n_out, self.out_channels)

    def _one_shot_conv(self, x: Tensor) -> Tensor:
        """The kernel ``F.conv1d`` picks for the one-shot model's long float32 CPU input ``[B, C, T]``: oneDNN, but
        for a 1x1 conv on one thread, which stays on torch's own. A piece may hold fewer values than the 20480
        above which ``F.conv1d`` turns to oneDNN, hence the direct call (a 1D conv as oneDNN gets it: 2D, height 1).
        """
        pointwise = self.kernel_size == 1 and self.stride == 1 and self.dilation == 1
        native = pointwise and torch.get_num_threads() == 1 and x.shape[0] < 16
        if native or x.device.type != "cpu" or x.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
            return F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation)
        y = torch.mkldnn_convolution(x.unsqueeze(2), self.weight.unsqueeze(2), self.bias, (0, 0), (1, self.stride),
                                     (1, self.dilation), 1)
        return y.squeeze(2)

    def step(self, x: Tensor) -> Tensor:
        self.received += x.shape[1]
        buffer = _cat(self.buffer, x)
        if not self.started:
            if self.received <= self.start_after:
                self.buffer = buffer
                return _empty(x, self.out_channels)
            buffer = _pad_time(buffer, self.padding_total, 0, self.pad_mode)
            self.started = True
        n_out = (buffer.shape[1] - self.span) // self.stride + 1
        if n_out <= 0:
            self.buffer = buffer
            return _empty(x, self.out_channels)
        self.buffer = buffer[:, n_out * self.stride:]
        return self._conv(buffer, n_out)

    def flush(self) -> Tensor:
        assert self.buffer is not None, "flush() before any step()"
        if not self.started:  # the whole stream is shorter than the padding: the one-shot short-input rule
            if self.received == 0:
                return _empty(self.buffer, self.out_channels)
            return self.layer(self.buffer.transpose(1, 2)).transpose(1, 2)
        extra = extra_padding(self.received, self.kernel_size, self.stride, self.padding_total)
        buffer = _pad_time(self.buffer, 0, extra, self.pad_mode)
        self.buffer = buffer[:, :0]
        if buffer.shape[1] < self.span:
            return _empty(buffer, self.out_channels)
        return self._conv(buffer, (buffer.shape[1] - self.span) // self.stride + 1)


class _ConvTransposeStream(_Stream):
    """One matrix product gives every input frame's ``kernel`` output samples; laid out as ``blocks`` blocks of
    ``stride`` samples (the kernel zero-padded to a whole number of blocks), block ``j`` of frame ``t`` lands on
    output block ``t + j``. The blocks that reach past the piece wait, without bias, for the next piece."""

    def __init__(self, layer: PaddedConvTranspose1d) -> None:
        if not isinstance(layer.convtr.norm, nn.Identity):
            raise ValueError("a transposed conv followed by a norm over time cannot stream")
        if not layer.causal:
            raise ValueError("a non-causal transposed conv cannot stream")
        convtr = layer.convtr.convtr
        if convtr.groups != 1:
            raise ValueError("a grouped transposed conv cannot stream")
        weight = convtr.effective_weight().detach()  # [C_in, C_out, kernel]
        in_channels, self.out_channels, kernel = weight.shape
        self.stride = layer.stride
        self.blocks = math.ceil(kernel / self.stride)
        matrix = weight.new_zeros((in_channels, self.blocks * self.stride, self.out_channels))
        matrix[:, :kernel] = weight.permute(0, 2, 1)
        self.matrix = matrix.view(in_channels, -1)  # columns ordered (block, sample in block, output channel)
        self.bias = None if convtr.bias is None else convtr.bias.detach()
        self.trim_left = layer.trim[0]
        self.to_trim = self.trim_left
        self.tail: Optional[Tensor] = None  # [B, blocks - 1, stride, C_out]

    def ready(self, n_inputs: int) -> int:
        return max(0, n_inputs * self.stride - self.trim_left)

    def _emit(self, y: Tensor) -> Tensor:
        if self.bias is not None:
            y = y + self.bias
        if self.to_trim:
            cut = min(self.to_trim, y.shape[1])
            self.to_trim -= cut
            y = y[:, cut:]
        return y

    def step(self, x: Tensor) -> Tensor:
        batch, n_frames, in_channels = x.shape
        if n_frames == 0:
            return _empty(x, self.out_channels)
        products = torch.mm(x.reshape(batch * n_frames, in_channels), self.matrix)
        products = products.view(batch, n_frames, self.blocks, self.stride, self.out_channels)
        if self.tail is not None:  # the previous piece's overhang lands where this piece's first frame starts
            products[:, 0, : self.blocks - 1] += self.tail
        if n_frames == 1:
            out = products[:, 0]
        else:
            out = products.new_zeros((batch, n_frames + self.blocks - 1, self.stride, self.out_channels))
            for block in range(self.blocks):
                out[:, block: block + n_frames] += products[:, :, block]
        self.tail = out[:, n_frames:]
        return self._emit(out[:, :n_frames].reshape(batch, n_frames * self.stride, self.out_channels))

    def flush(self) -> Optional[Tensor]:
        if self.tail is None:
            return None
        tail = self.tail.reshape(self.tail.shape[0], -1, self.out_channels)
        return self._emit(tail[:, : self.trim_left])


class _LSTMStream(_Stream):
    """The skip-LSTM, carrying (h, c) per layer from piece to piece.

    One frame (the common push): ``torch.lstm_cell`` per layer, rather than ``nn.LSTM``, which on CPU goes
    through oneDNN and re-lays out its 16 MB of weights at every call, which costs more than the step itself.
    A few frames: layer by layer, the input half of every frame's gates in one product (its 4 MB of weights read
    once, not once per frame), then the recurrent half frame by frame, with ``lstm_cell``'s arithmetic. Long
    pushes (``one_shot_kernels``): the module itself, as the one-shot model runs it, from the carried state.
    """

    def __init__(self, layer: SkipLSTM) -> None:
        lstm = layer.lstm
        if lstm.bidirectional or lstm.proj_size or not lstm.bias or lstm.batch_first:
            raise ValueError("only a plain unidirectional LSTM with biases can stream")
        self.weights = [tuple(getattr(lstm, f"{name}_l{index}").detach()
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                        for index in range(lstm.num_layers)]
        self.lstm = lstm
        self.state: Optional[list[tuple[Tensor, Tensor]]] = None

    def step(self, x: Tensor) -> Tensor:
        n_frames = x.shape[1]
        if n_frames == 0:
            return x
        if self.state is None:
            zeros = x.new_zeros((x.shape[0], x.shape[2]))
            self.state = [(zeros, zeros)] * len(self.weights)
        if self.one_shot_kernels:
            sequence = x.transpose(0, 1)  # [T, B, C]
            out, (h, c) = self.lstm(sequence, tuple(torch.stack(part) for part in zip(*self.state)))
            self.state = list(zip(h, c))
            return (out + sequence).transpose(0, 1)
        if n_frames == 1:
            h = x[:, 0]
            for index, weights in enumerate(self.weights):
                h, c = torch.lstm_cell(h, self.state[index], *weights)
                self.state[index] = (h, c)
            return h.unsqueeze(1) + x
        layer_input = x
        for index, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.weights):
            h, c = self.state[index]
            input_gates = F.linear(layer_input, w_ih, b_ih)  # [B, T, 4H]
            outputs = []
            for frame in range(n_frames):
                gates = input_gates[:, frame] + F.linear(h, w_hh, b_hh)
                in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, 1)
                c = forget_gate.sigmoid() * c + in_gate.sigmoid() * cell_gate.tanh()
                h = out_gate.sigmoid() * c.tanh()
                outputs.append(h)
            self.state[index] = (h, c)
            layer_input = torch.stack(outputs, dim=1)
        return layer_input + x


class _ELUStream(_Stream):
    def __init__(self, layer: nn.ELU) -> None:
        self.alpha = layer.alpha

    def step(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class _IdentityStream(_Stream):
    def step(self, x: Tensor) -> Tensor:
        return x


class _SequentialStream(_Stream):
    def __init__(self, layers: list[_Stream]) -> None:
        self.layers = layers

    def children(self) -> list[_Stream]:
        return self.layers

    def ready(self, n_inputs: int) -> int:
        for layer in self.layers:
            n_inputs = layer.ready(n_inputs)
        return n_inputs

    def step(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer.step(x)
        return x

    def flush(self) -> Optional[Tensor]:
        """Flush layer by layer: each layer's last outputs go through the next layer before it flushes."""
        out: Optional[Tensor] = None
        for layer in self.layers:
            out = _cat(None if out is None else layer.step(out), layer.flush())
        return out


class _ResidualStream(_Stream):
    """Shortcut plus block. Both end in a 1x1 conv (or the shortcut is the identity), so their sum is one matrix
    product of the block's input beside its last hidden signal, ``[x, h] @ [W_shortcut; W_out]``, taken once ``h``
    has caught up with ``x`` (the block's first conv starts later: it waits for its reflect padding)."""

    def __init__(self, layer: ResidualBlock) -> None:
        *front, last = layer.block
        shortcut = layer.shortcut
        if not _is_pointwise(last) or not (isinstance(shortcut, nn.Identity) or _is_pointwise(shortcut)):
            raise TypeError("a residual block streams when its block and its shortcut end in a 1x1 conv "
                            "(or the shortcut is the identity)")
        self.front = _SequentialStream([_stream_of(module) for module in front])
        out = self.out = _ConvStream(last)
        self.identity = isinstance(shortcut, nn.Identity)
        self.skip = None if self.identity else _ConvStream(shortcut)
        self.matrix, self.bias = out.matrix, out.bias
        if self.skip is not None:
            skip = self.skip
            self.matrix = torch.cat([skip.matrix, out.matrix])  # rows: the input's channels, then the block's
            if skip.bias is not None and out.bias is not None:
                self.bias = skip.bias + out.bias
            else:
                self.bias = skip.bias if out.bias is None else out.bias
        self.out_channels = self.matrix.shape[1]
        self.pending: Optional[Tensor] = None  # block inputs whose hidden signal is not out yet

    def children(self) -> list[_Stream]:
        return [self.front, self.out] + ([] if self.skip is None else [self.skip])

    def ready(self, n_inputs: int) -> int:
        return self.front.ready(n_inputs)

    def _sum(self, x: Tensor, hidden: Tensor) -> Tensor:
        batch, n, _ = hidden.shape
        if n == 0:
            return _empty(hidden, self.out_channels)
        if self.one_shot_kernels:  # the one-shot block: each 1x1 conv apart, then block + shortcut
            out = self.out._conv(hidden, n)
            return out + (x if self.skip is None else self.skip._conv(x, n))
        rows = (hidden if self.identity else torch.cat([x, hidden], dim=2)).reshape(batch * n, -1)
        out = torch.mm(rows, self.matrix) if self.bias is None else torch.addmm(self.bias, rows, self.matrix)
        out = out.view(batch, n, self.out_channels)
        return out.add_(x) if self.identity else out

    def step(self, x: Tensor) -> Tensor:
        hidden = self.front.step(x)
        inputs = _cat(self.pending, x)
        n = hidden.shape[1]
        self.pending = inputs[:, n:]
        return self._sum(inputs[:, :n], hidden)

    def flush(self) -> Optional[Tensor]:
        hidden = self.front.flush()
        assert hidden is not None and self.pending is not None and hidden.shape[1] == self.pending.shape[1]
        inputs, self.pending = self.pending, None
        return self._sum(inputs, hidden)


def _is_pointwise(module: nn.Module) -> bool:
    """A 1x1 conv: no padding, no state to stream."""
    return isinstance(module, PaddedConv1d) and module.kernel_size == 1 and module.stride == 1


def _stream_of(module: nn.Module) -> _Stream:
    """The streaming counterpart of one SEANet layer."""
    if isinstance(module, nn.Sequential):
        return _SequentialStream([_stream_of(child) for child in module])
    streams = {PaddedConv1d: _ConvStream, PaddedConvTranspose1d: _ConvTransposeStream, SkipLSTM: _LSTMStream,
               nn.ELU: _ELUStream, ResidualBlock: _ResidualStream}
    for kind, stream in streams.items():
        if isinstance(module, kind):
            return stream(module)
    if isinstance(module, nn.Identity):
        return _IdentityStream()
    raise TypeError(f"no streaming version of {type(module).__name__}")


def _all_streams(stream: _Stream) -> list[_Stream]:
    return [stream] + [inner for child in stream.children() for inner in _all_streams(child)]


def _first_ready(stream: _Stream, step: int) -> int:
    """Smallest multiple of ``step`` inputs after which ``stream`` has produced an output."""
    n = step
    while stream.ready(n) == 0:
        n += step
    return n


class _Streaming:
    """What the encoder and the decoder share: the model, the latency figures, the end-of-stream guard."""

    def __init__(self, model: EncodecModel, network: nn.Module) -> None:
        check_streamable(model.config)
        self.model = model
        self.hop_length = model.config.hop_length
        self._net = _stream_of(network.model)
        self._streams = _all_streams(self._net)
        self._flushed = False
        self._batch: Optional[int] = None
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @property
    def frame_latency_samples(self) -> int:
        """Steady-state latency: a frame waits until all its ``hop_length`` samples have arrived."""
        return self.hop_length

    @property
    def frame_latency_seconds(self) -> float:
        return self.hop_length / self.model.sample_rate

    def _kernels_for(self, n_frames: int) -> None:
        """Long pushes run the one-shot model's kernels, short ones the lean path (see ``_Stream``)."""
        one_shot = n_frames >= LONG_PUSH_FRAMES
        if one_shot != self._net.one_shot_kernels:
            for stream in self._streams:
                stream.one_shot_kernels = one_shot

    def _check_open(self, batch: int) -> None:
        if self._flushed:
            raise RuntimeError("this stream was flushed (end of stream); create a new one for more input")
        if self._batch is not None and batch != self._batch:
            raise ValueError(f"batch size changed within a stream: {self._batch} then {batch}")
        self._batch = batch

    def _flush(self) -> Tensor:
        """End of stream: the rest of the network's output, time-major."""
        if self._batch is None:
            raise ValueError("nothing to flush: no input was pushed into the stream")
        self._check_open(self._batch)
        self._flushed = True
        out = self._net.flush()
        assert out is not None, "the last layer is a conv, whose flush always returns a tensor"
        return out


class StreamingEncoder(_Streaming):
    """Audio pieces ``[B, channels, n]`` in, codes ``[B, K, frames]`` out as soon as each frame is complete.

    The concatenated codes of every ``push`` and the final ``flush`` equal ``model.encode(whole_audio)``.
    """

    def __init__(self, model: EncodecModel, bandwidth: Optional[float] = None) -> None:
        super().__init__(model, model.encoder)
        self.bandwidth = model.bandwidth if bandwidth is None else bandwidth
        self.num_codebooks = model.config.num_codebooks(self.bandwidth)
        # each codebook with its squared norms, for the nearest-code search of every frame
        embeds = [layer._codebook.embed.detach() for layer in model.quantizer.vq.layers[: self.num_codebooks]]
        self._codebooks = [(embed, squared_norms(embed)) for embed in embeds]
        self.samples_received = 0

    @property
    def startup_samples(self) -> int:
        """Samples that must arrive before the first codes come out (2240 at 24 kHz: 7 frames)."""
        return _first_ready(self._net, self.hop_length)

    @property
    def startup_frames(self) -> int:
        """Frames beyond the first that the reference's reflect padding makes the stream wait for, once."""
        return self.startup_samples // self.hop_length - 1

    def frames_ready(self, n_samples: int) -> int:
        """Code frames out after ``n_samples`` samples went in (before ``flush``)."""
        return self._net.ready(n_samples)

    @torch.inference_mode()
    def push(self, wav: Tensor) -> Tensor:
        """Take the next piece of audio; return the codes of every frame it completes (possibly none)."""
        if wav.dim() != 3 or wav.shape[1] != self.model.channels:
            raise ValueError(f"audio pieces must be shaped [batch, {self.model.channels}, samples], "
                             f"got {tuple(wav.shape)}")
        self._check_open(wav.shape[0])
        if wav.shape[-1]:
            audio.check_finite(wav)
        self.samples_received += wav.shape[-1]
        self._kernels_for(wav.shape[-1] // self.hop_length)
        # a copy (time-major): the first layers keep unconsumed samples, and callers often refill one buffer
        piece = torch.empty((wav.shape[0], wav.shape[2], wav.shape[1]), device=self.device, dtype=self.dtype)
        return self._codes(self._net.step(piece.copy_(wav.transpose(1, 2))))

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """End the stream: the codes of the last frames, the final one padded as the one-shot model pads it."""
        if self.samples_received == 0 and self._batch is not None:
            raise audio.AudioError("audio is empty (0 samples)")
        return self._codes(self._flush())

    def _codes(self, latents: Tensor) -> Tensor:
        """Time-major latents ``[B, T, D]`` to codes ``[B, K, T]``: the model's residual quantization, spelt as
        ``nearest_code`` spells the distance (same rounding) with the codebook's transpose and norms at hand."""
        batch, n_frames, dimension = latents.shape
        if n_frames == 0:
            return torch.empty((batch, self.num_codebooks, 0), dtype=torch.long, device=self.device)
        residual = latents.reshape(batch * n_frames, dimension)
        codes = []
        last = len(self._codebooks) - 1
        for index, (embed, norms) in enumerate(self._codebooks):
            code = nearest_code(residual, embed, norms)
            if index < last:
                residual = residual - F.embedding(code, embed)
            codes.append(code)
        return torch.stack(codes).view(-1, batch, n_frames).transpose(0, 1)


class StreamingDecoder(_Streaming):
    """Codes ``[B, K, frames]`` in, audio ``[B, channels, samples]`` out as soon as it is determined.

    The concatenated audio of every ``push`` and the final ``flush`` equals ``model.decode`` of the same codes
    (``frames * hop_length`` samples; crop to the original length yourself).
    """

    def __init__(self, model: EncodecModel) -> None:
        super().__init__(model, model.decoder)
        bins = model.config.bins
        # all codebooks stacked: codebook k's code i is row k * bins + i, so one lookup serves every codebook
        self._table = torch.cat([layer._codebook.embed.detach() for layer in model.quantizer.vq.layers])
        self._offsets = torch.arange(0, self._table.shape[0], bins, device=self.device)
        self.frames_received = 0

    @property
    def startup_frames(self) -> int:
        """Frames beyond the first that must arrive before the first audio comes out (6 at 24 kHz)."""
        return _first_ready(self._net, 1) - 1

    def samples_ready(self, n_frames: int) -> int:
        """Audio samples out after ``n_frames`` code frames went in (before ``flush``)."""
        return self._net.ready(n_frames)

    @torch.inference_mode()
    def push(self, codes: Tensor) -> Tensor:
        """Take the next code frames; return every audio sample they complete (possibly none)."""
        bins, n_q = self.model.config.bins, self.model.quantizer.n_q
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= n_q:
            raise ValueError(f"codes must be shaped [batch, 1..{n_q} codebooks, frames], got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        self._check_open(codes.shape[0])
        if codes.numel():
            low, high = torch.aminmax(codes)
            if int(low) < 0 or int(high) >= bins:
                raise ValueError(f"codes must lie in 0..{bins - 1}")
        self.frames_received += codes.shape[-1]
        self._kernels_for(codes.shape[-1])
        # [B, T, K, D] summed over the codebooks in order, as the model's quantizer sums them
        rows = self._offsets[: codes.shape[1]] + codes.to(self.device, torch.long).transpose(1, 2)
        latents = F.embedding(rows, self._table).sum(2)
        return self._net.step(latents).transpose(1, 2).contiguous()

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """End the stream: audio still held back (all of it for a stream shorter than the start-up; the last
        samples of a transposed conv that trims on both sides, when ``trim_right_ratio`` < 1)."""
        if self.frames_received == 0 and self._batch is not None:
            raise ValueError("no code frames to decode")
        return self._flush().transpose(1, 2).contiguous()
